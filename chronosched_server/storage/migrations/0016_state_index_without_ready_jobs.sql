-- jobs_namespace_state_idx (namespace_id, state, job_id) serves the lists of
-- a namespace's jobs in one state. READY jobs are in the claim's partial
-- indexes already (jobs_ready_idx leads with namespace_id), yet every job
-- enqueued READY went into this index as well: about 1.2 ms of a 1,000-run
-- EnqueueJobs call's 14.7 (an interleaved A/B beside PgQueuer's enqueue on
-- one PostgreSQL, docs/performance.md). Partial,
-- it leaves READY rows out. A list of READY jobs reads them through
-- jobs_ready_idx and sorts them by id, or walks jobs_namespace_idx; the
-- other states keep their index. A job claimed from READY enters it then,
-- as RUNNING, as before.
drop index jobs_namespace_state_idx;
create index jobs_namespace_state_idx on jobs (namespace_id, state, job_id) where state <> 'READY';
