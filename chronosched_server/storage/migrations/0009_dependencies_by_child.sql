-- Job.waiting names a PENDING job's unfinished parents, found by child. The
-- primary key (dag_id, parent_job_id, child_job_id) serves lookups by parent
-- only; without this index each waiting job would scan its DAG's edges.
create index dependencies_child_idx on dependencies (child_job_id);
