-- name: prune
-- One statement, one snapshot: DAGs finished before the cutoff move with
-- their jobs and edges; standalone jobs move on their own.
with cutoff as (
    select now() - %(older_than)s::interval as t
), victims as (
    select d.dag_id from dags d, cutoff
    where d.state in ('SUCCEEDED', 'FAILED', 'CANCELLED')
      and d.unfinished_job_count = 0
      and d.end_time < cutoff.t
      and (%(namespace_id)s::text is null or d.namespace_id = %(namespace_id)s::text)
    for update of d
), moved_jobs as (
    delete from jobs j using victims v where j.dag_id = v.dag_id returning j.*
), moved_standalone as (
    delete from jobs j using cutoff
    where j.dag_id is null
      and j.state in ('SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED')
      and j.end_time < cutoff.t
      and (%(namespace_id)s::text is null or j.namespace_id = %(namespace_id)s::text)
    returning j.*
), moved_edges as (
    delete from dependencies e using victims v where e.dag_id = v.dag_id returning e.*
), moved_dags as (
    delete from dags d using victims v where d.dag_id = v.dag_id returning d.*
), ins_jobs as (
    insert into jobs_history
    select * from moved_jobs union all select * from moved_standalone
    returning 1
), ins_edges as (
    insert into dependencies_history select * from moved_edges returning 1
), ins_dags as (
    insert into dags_history select * from moved_dags returning 1
)
select (select count(*) from ins_dags) as dags_pruned,
       (select count(*) from ins_jobs) as jobs_pruned,
       (select count(*) from ins_edges) as dependencies_pruned;
