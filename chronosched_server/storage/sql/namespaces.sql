-- name: insert_namespace
insert into namespaces (namespace_id, description)
values (%(namespace_id)s::text, %(description)s::text)
returning namespace_id, description, create_time;

-- name: get_namespace
select namespace_id, description, create_time
from namespaces
where namespace_id = %(namespace_id)s::text;

-- name: list_namespaces
-- `only`: the one namespace a caller's token is limited to.
select namespace_id, description, create_time
from namespaces
where (%(after)s::text is null or namespace_id > %(after)s::text)
  and (%(only)s::text is null or namespace_id = %(only)s::text)
order by namespace_id
limit %(limit)s::int;

-- name: claim_request_id
-- The first caller inserts the key; a concurrent retry blocks here until the
-- first commits, then finds the row and returns the first call's result.
-- Nothing (rather than a foreign key error) when the namespace is missing:
-- a pipelined caller reads its hold_namespace first and reports that.
insert into request_ids (namespace_id, method, request_id)
select namespace_id, %(method)s::text, %(request_id)s::text
from namespaces
where namespace_id = %(namespace_id)s::text
on conflict do nothing
returning request_id;

-- name: get_request_id
select resource_ids
from request_ids
where namespace_id = %(namespace_id)s::text
  and method = %(method)s::text
  and request_id = %(request_id)s::text;

-- name: set_request_id
update request_ids
set resource_ids = %(resource_ids)s::uuid[]
where namespace_id = %(namespace_id)s::text
  and method = %(method)s::text
  and request_id = %(request_id)s::text;

-- name: hold_namespace
-- Every write that adds to a namespace holds its row until it commits. KEY
-- SHARE: writers do not block each other (nor FK checks), only
-- DeleteNamespace's FOR UPDATE, which then either waits for the write and
-- sees what it wrote, or goes first, and the write finds no namespace.
-- The transaction's time (now(), every row's create_time) comes along for
-- writes that stamp their rows with it.
select namespace_id, now() as now
from namespaces
where namespace_id = %(namespace_id)s::text
for key share;

-- name: lock_namespace
-- DeleteNamespace, step 1: waits for the writes in flight, keeps new ones out.
select namespace_id
from namespaces
where namespace_id = %(namespace_id)s::text
for update;

-- name: namespace_leftovers
-- DeleteNamespace, step 2: what keeps a namespace from being deleted. A DAG
-- is live while it may still run a job (PENDING or RUNNING, or FAILED with
-- branches still running); a job is unfinished until it is terminal.
select
    (select count(*) from dags
     where namespace_id = %(namespace_id)s::text
       and (state in ('PENDING', 'RUNNING') or unfinished_job_count > 0)) as live_dags,
    (select count(*) from jobs
     where namespace_id = %(namespace_id)s::text
       and state in ('PENDING', 'READY', 'RUNNING')) as unfinished_jobs,
    (select count(*) from job_definitions
     where namespace_id = %(namespace_id)s::text and retire_time is null) as unretired_definitions;

-- name: delete_namespace_work
-- DeleteNamespace, step 3: the fire ledger, then the live tables, each
-- selected by its namespace_id column (no foreign key cascades: migration
-- 0012). Before the history tables, in a later statement: a prune batch
-- that held some of these rows has committed by then, and what it moved is
-- in history for the next statement to see.
with fires as (
    delete from cron_fires where namespace_id = %(namespace_id)s::text
), gone_dags as (
    delete from dags where namespace_id = %(namespace_id)s::text returning dag_id
), edges as (
    delete from dependencies e using gone_dags g where e.dag_id = g.dag_id
)
delete from jobs where namespace_id = %(namespace_id)s::text;

-- name: delete_namespace_history
-- DeleteNamespace, step 4. The history tables have no namespace index: this
-- scans dags_history and jobs_history.
with gone_dags as (
    delete from dags_history where namespace_id = %(namespace_id)s::text returning dag_id
), edges as (
    delete from dependencies_history e using gone_dags g where e.dag_id = g.dag_id
)
delete from jobs_history where namespace_id = %(namespace_id)s::text;

-- name: delete_namespace
-- DeleteNamespace, step 5: what only referenced the namespace, the
-- definitions (no job or fire references them any more) and the row itself.
with schedules_gone as (
    delete from schedules where namespace_id = %(namespace_id)s::text
), request_ids_gone as (
    delete from request_ids where namespace_id = %(namespace_id)s::text
), definitions_gone as (
    delete from job_definitions where namespace_id = %(namespace_id)s::text
)
delete from namespaces where namespace_id = %(namespace_id)s::text;
