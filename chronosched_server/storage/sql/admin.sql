-- name: prune
-- One batch of the move to history, the only statement that moves work
-- there (manual Prune and the retention loop both run it, batch after
-- batch, each in a short transaction of its own). A batch takes up to
-- `batch` finished standalone jobs, and finished DAGs (terminal, no
-- unfinished job) in end order until their jobs add up to `batch` (the
-- first DAG always goes, however big), each DAG with its jobs and edges.
-- Victims (DAG rows, standalone jobs) are picked through the partial
-- end_time indexes, oldest first, and SKIP LOCKED: one that a result, a
-- cancel or another prune holds is left for a later batch instead of being
-- waited on (a taken DAG's own jobs are deleted with plain row locks). The
-- cutoff is passed back so every batch of one prune uses the first batch's.
with cutoff as (
    select coalesce(%(cutoff)s::timestamptz, now() - %(older_than)s::interval) as t
), dag_candidates as (
    select d.dag_id, d.job_count, d.end_time from dags d, cutoff
    where d.state in ('SUCCEEDED', 'FAILED', 'CANCELLED')
      and d.end_time < cutoff.t
      and d.unfinished_job_count = 0
      and (%(namespace_id)s::text is null or d.namespace_id = %(namespace_id)s::text)
    order by d.end_time, d.dag_id
    limit %(batch)s::int
    for update of d skip locked
), victims as (
    select c.dag_id from (
        select dag_id,
               sum(job_count) over (order by end_time, dag_id) - job_count as jobs_before
        from dag_candidates
    ) c
    where c.jobs_before < %(batch)s::int
), standalone as (
    select j.job_id from jobs j, cutoff
    where j.dag_id is null
      and j.state in ('SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED')
      and j.end_time < cutoff.t
      and (%(namespace_id)s::text is null or j.namespace_id = %(namespace_id)s::text)
    order by j.end_time
    limit %(batch)s::int
    for update of j skip locked
), victim_ids as (
    -- As an array: `= any(...)` is planned as index probes (the planner
    -- does not know a batch is small and would hash-join a join against the
    -- CTE with a scan of the whole table).
    select array(select dag_id from victims) as ids
), moved_jobs as (
    delete from jobs j using victim_ids v where j.dag_id = any(v.ids) returning j.*
), moved_standalone as (
    delete from jobs j
    where j.job_id = any(array(select job_id from standalone))
    returning j.*
), moved_edges as (
    delete from dependencies e using victim_ids v where e.dag_id = any(v.ids) returning e.*
), moved_dags as (
    delete from dags d using victim_ids v where d.dag_id = any(v.ids) returning d.*
), ins_jobs as (
    insert into jobs_history
    select * from moved_jobs union all select * from moved_standalone
    returning 1
), ins_edges as (
    insert into dependencies_history select * from moved_edges returning 1
), ins_dags as (
    insert into dags_history select * from moved_dags returning 1
)
select (select t from cutoff) as cutoff,
       (select count(*) from ins_dags) as dags_pruned,
       (select count(*) from ins_jobs) as jobs_pruned,
       (select count(*) from ins_edges) as dependencies_pruned,
       -- Whether another batch may find more: a limit was reached, or the
       -- job bound left candidates behind.
       (select count(*) from dag_candidates) = %(batch)s::int
           or (select count(*) from victims) < (select count(*) from dag_candidates)
           or (select count(*) from standalone) = %(batch)s::int as more;

-- name: try_retention_lock
-- Session-level, so it is held for as long as the session that took it
-- lives: the retention leader. The key is a hash of a fixed text; the
-- per-name locks of definitions.sql hash "namespace/name", which always
-- holds a slash, so they cannot collide with it.
select pg_try_advisory_lock(hashtextextended('chronosched.retention', 0)) as locked;

-- name: retention_lock_alive
-- The leader's check that its session (and with it the lock) still lives.
select 1 as alive;
