-- Enqueue writes every job twice, into jobs and (READY) into frontier, and
-- each foreign key on those tables ran one trigger, a lookup and a row lock
-- per inserted row: measured on a 1,000-job batch, the three keys below were
-- about half of the database's time (25 ms with them, 13 ms without). The
-- storage layer is their only writer and already keeps what they checked:
-- a job is inserted only by a transaction that has just written or locked
-- its DAG row (DAG jobs) and holds its namespace's row (KEY SHARE) or its
-- live definition (FOR SHARE, cron fires), which DeleteNamespace, the only
-- way a definition goes, has to wait for; a frontier row only for a job
-- the same transaction made READY. What their cascades
-- deleted is now deleted explicitly: DeleteDag removes the DAG's frontier
-- rows and jobs, DeleteNamespace every job of the namespace, prune moves a
-- DAG's jobs with it (it always did). Definitions go only with their
-- namespace, after its jobs.
alter table jobs drop constraint jobs_dag_id_fkey;
alter table jobs drop constraint jobs_def_id_fkey;
alter table frontier drop constraint frontier_job_id_fkey;
