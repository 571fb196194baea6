-- Retention: the batched prune (sql/admin.sql, `prune`) picks finished DAGs
-- oldest first, LIMIT a batch, through this index, so each batch reads about
-- a batch of index entries however many DAGs there are. Standalone jobs
-- already have theirs (jobs_standalone_end_idx, 0001); a DAG's jobs and
-- edges are found through their dag_id keys.
--
-- Partial, so only finished DAGs are in it. It indexes no column the
-- count-downs change (unfinished_job_count), so those stay HOT updates.
-- Built in the migration's transaction (not CONCURRENTLY), so writes to dags
-- wait while it builds: one pass over the table.
create index dags_finished_end_idx on dags (end_time)
    where state in ('SUCCEEDED', 'FAILED', 'CANCELLED');
