-- name: insert_dag
-- A DAG created with start=true is written RUNNING at once, as start_dag
-- would leave it: one statement, and no dead row version per enqueue.
-- Nothing (rather than a foreign key error) when the namespace is missing:
-- the pipelined caller reads its hold_namespace first and reports that.
insert into dags (dag_id, namespace_id, name, job_count, unfinished_job_count, state, start_time, update_time)
select %(dag_id)s::uuid, n.namespace_id, %(name)s::text, %(job_count)s::bigint,
       %(job_count)s::bigint, case when s then 'RUNNING' else 'PENDING' end,
       case when s then c.t end, case when s then c.t else now() end
from (select %(start)s::boolean as s, clock_timestamp() as t) c, namespaces n
where n.namespace_id = %(namespace_id)s::text
returning *;

-- name: get_dag
select * from dags where dag_id = %(dag_id)s::uuid and namespace_id = %(namespace_id)s::text
union all
select * from dags_history where dag_id = %(dag_id)s::uuid and namespace_id = %(namespace_id)s::text
limit 1;

-- name: lock_dag
select * from dags
where dag_id = %(dag_id)s::uuid and namespace_id = %(namespace_id)s::text
for update;

-- name: list_dags
select * from dags
where namespace_id = %(namespace_id)s::text
  and (%(state)s::text is null or state = %(state)s::text)
  and (%(after)s::uuid is null or dag_id > %(after)s::uuid)
order by dag_id
limit %(limit)s::int;

-- name: dag_job_keys
select job_id, key from jobs where dag_id = %(dag_id)s::uuid;

-- name: dag_edges
select parent_job_id, child_job_id from dependencies where dag_id = %(dag_id)s::uuid;

-- name: jobs_dag_of
-- Only in the caller's namespace: a job elsewhere must look missing.
select job_id, dag_id from jobs
where job_id = any(%(job_ids)s::uuid[]) and namespace_id = %(namespace_id)s::text;

-- name: add_dag_jobs
update dags
set job_count = job_count + %(n)s::bigint,
    unfinished_job_count = unfinished_job_count + %(n)s::bigint,
    update_time = clock_timestamp()
where dag_id = %(dag_id)s::uuid;

-- name: insert_edges
insert into dependencies (dag_id, parent_job_id, child_job_id)
select %(dag_id)s::uuid, p, c
from unnest(%(parents)s::uuid[], %(children)s::uuid[]) as e (p, c);

-- name: add_pending_parents
update jobs
set pending_parents = pending_parents + x.n, update_time = clock_timestamp()
from unnest(%(job_ids)s::uuid[], %(counts)s::int[]) as x (job_id, n)
where jobs.job_id = x.job_id;

-- name: start_dag
update dags
set state = 'RUNNING', start_time = clock_timestamp(), update_time = clock_timestamp()
where dag_id = %(dag_id)s::uuid
returning *;

-- name: start_dag_roots
update jobs
set state = 'READY', due_time = clock_timestamp(), update_time = clock_timestamp()
where dag_id = %(dag_id)s::uuid and state = 'PENDING' and pending_parents = 0;

-- name: cancel_dag_jobs
-- Cancels the unfinished jobs, locked in job_id order. Returns the attempts
-- that were RUNNING, read under the lock so none is missed, for the cancel
-- notifications (rows with a job_id), then how many were cancelled per kind
-- for the metrics (rows with a kind).
with locked as (
    select job_id, state, attempt
    from jobs
    where dag_id = %(dag_id)s::uuid and state in ('PENDING', 'READY', 'RUNNING')
    order by job_id
    for update
), cancelled as (
    update jobs j
    set state = 'CANCELLED', end_time = c.t, update_time = c.t, lease_expire_time = null
    from locked l, (select clock_timestamp() as t) c
    where j.job_id = l.job_id
    returning j.job_id, j.kind, l.state as old_state, l.attempt
)
select job_id, attempt, null::text as kind, null::bigint as n from cancelled where old_state = 'RUNNING'
union all
select null, null, kind, count(*)
from cancelled
group by kind;

-- name: read_dag
select * from dags where dag_id = %(dag_id)s::uuid and namespace_id = %(namespace_id)s::text;

-- name: cancel_dag
update dags
set state = case when state in ('PENDING', 'RUNNING') then 'CANCELLED' else state end,
    unfinished_job_count = 0, end_time = coalesce(end_time, clock_timestamp()), update_time = clock_timestamp()
where dag_id = %(dag_id)s::uuid
returning *;

-- name: delete_dag_edges
delete from dependencies where dag_id = %(dag_id)s::uuid;

-- name: delete_dag
-- The DAG with its jobs (no cascade does it: migration 0012). The caller
-- has cancelled its unfinished jobs first, under their row locks.
with gone_jobs as (
    delete from jobs where dag_id = %(dag_id)s::uuid
)
delete from dags where dag_id = %(dag_id)s::uuid;

-- name: list_dependencies
select parent_job_id, child_job_id
from dependencies
where dag_id = %(dag_id)s::uuid
  and (%(after_parent)s::uuid is null
       or (parent_job_id, child_job_id) > (%(after_parent)s::uuid, %(after_child)s::uuid))
order by parent_job_id, child_job_id
limit %(limit)s::int;

-- name: analyze_queue_tables
analyze jobs, dependencies;

-- name: insert_job_rows
-- The rows insert_jobs renders, for a few jobs: one INSERT that can travel
-- in a pipeline (COPY cannot). dag_id null for standalone runs.
insert into jobs (
    job_id, namespace_id, dag_id, def_id, kind, key, state, max_attempts, priority, pending_parents,
    payload, due_time
)
select x.job_id, %(namespace_id)s::text, %(dag_id)s::uuid, x.def_id, x.kind, x.key, x.state, x.max_attempts,
       x.priority, x.pending_parents, x.payload, x.due_time
from unnest(
    %(job_ids)s::uuid[], %(def_ids)s::uuid[], %(kinds)s::text[], %(keys)s::text[], %(states)s::text[],
    %(max_attempts)s::int[], %(priorities)s::int[], %(pending_parents)s::int[], %(payloads)s::jsonb[],
    %(due_times)s::timestamptz[]
) as x (job_id, def_id, kind, key, state, max_attempts, priority, pending_parents, payload, due_time);

-- name: insert_edge_rows
-- A few edges of one DAG in one INSERT, as insert_job_rows for jobs.
insert into dependencies (dag_id, parent_job_id, child_job_id)
select %(dag_id)s::uuid, p, c
from unnest(%(parents)s::uuid[], %(children)s::uuid[]) as x (p, c);

-- name: create_dag_one
-- A small CreateDag (insert_job_rows' few jobs and edges, every version
-- read by this process before) in one statement and one round trip
-- (autocommit): the namespace held (KEY SHARE) as hold_namespace holds it,
-- the versions (FOR SHARE, in id order) as definitions_by_ids, the DAG as
-- insert_dag writes it, its jobs and edges as insert_job_rows and
-- insert_edge_rows, and with a request_id its key, naming the DAG. Payloads
-- are merged and checked by the caller beforehand; a job's priority null
-- means its version's default. No row means nothing was made: the
-- namespace or a version is missing, a version is retired, or the key was
-- there (a replay, or a concurrent first call, waited for); the caller's
-- steps then say which, or return the first call's DAG.
with ns as (
    select namespace_id from namespaces where namespace_id = %(namespace_id)s::text for key share
), d as (
    select d.def_id, d.kind, d.max_attempts, d.default_priority, d.retire_time
    from job_definitions d join ns on ns.namespace_id = d.namespace_id
    where d.def_id = any(%(def_ids)s::uuid[])
    order by d.def_id
    for share of d
), ok as (
    select count(*) = cardinality(%(def_ids)s::uuid[]) and bool_and(d.retire_time is null) as live
    from d
), c as (
    select %(start)s::boolean as s, clock_timestamp() as t
), r as (
    insert into request_ids (namespace_id, method, request_id, resource_ids)
    select %(namespace_id)s::text, %(method)s::text, %(request_id)s::text, array[%(dag_id)s::uuid]
    from ok
    where %(request_id)s::text is not null and ok.live
    on conflict do nothing
    returning request_id
), g as (
    insert into dags (dag_id, namespace_id, name, job_count, unfinished_job_count, state, start_time, update_time)
    select %(dag_id)s::uuid, %(namespace_id)s::text, %(name)s::text, %(job_count)s::bigint,
           %(job_count)s::bigint, case when c.s then 'RUNNING' else 'PENDING' end,
           case when c.s then c.t end, case when c.s then c.t else now() end
    from ok, c
    where ok.live and (%(request_id)s::text is null or exists (select from r))
    returning *
), j as (
    insert into jobs (
        job_id, namespace_id, dag_id, def_id, kind, key, state, max_attempts, priority, pending_parents,
        payload, due_time
    )
    select x.job_id, g.namespace_id, g.dag_id, x.def_id, d.kind, x.key,
           case when c.s and x.pending_parents = 0 then 'READY' else 'PENDING' end, d.max_attempts,
           coalesce(x.priority, d.default_priority), x.pending_parents, x.payload,
           case when c.s and x.pending_parents = 0 then g.start_time end
    from g, c, unnest(
        %(job_ids)s::uuid[], %(job_def_ids)s::uuid[], %(keys)s::text[], %(priorities)s::int[],
        %(pending_parents)s::int[], %(payloads)s::jsonb[]
    ) as x (job_id, def_id, key, priority, pending_parents, payload)
    join d on d.def_id = x.def_id
), e as (
    insert into dependencies (dag_id, parent_job_id, child_job_id)
    select g.dag_id, x.p, x.c
    from g, unnest(%(parents)s::uuid[], %(children)s::uuid[]) as x (p, c)
)
select g.* from g;
