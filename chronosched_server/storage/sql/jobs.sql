-- Job timestamps use clock_timestamp(), not now(): now() is when the writing
-- transaction began, so with overlapping transactions a child could be
-- recorded as starting before its parent's recorded end.

-- name: get_job
-- Live table first, then history: a pruned job is still found.
select j.*, d.version as def_version
from jobs j join job_definitions d on d.def_id = j.def_id
where j.job_id = %(job_id)s::uuid and j.namespace_id = %(namespace_id)s::text
union all
select h.*, d.version as def_version
from jobs_history h join job_definitions d on d.def_id = h.def_id
where h.job_id = %(job_id)s::uuid and h.namespace_id = %(namespace_id)s::text
limit 1;

-- name: get_jobs_by_ids
select j.*, d.version as def_version
from jobs j join job_definitions d on d.def_id = j.def_id
where j.job_id = any(%(job_ids)s::uuid[])
order by array_position(%(job_ids)s::uuid[], j.job_id);

-- name: list_jobs
select j.*, d.version as def_version
from jobs j join job_definitions d on d.def_id = j.def_id
where j.namespace_id = %(namespace_id)s::text
  and (%(state)s::text is null or j.state = %(state)s::text)
  and (%(dag_id)s::uuid is null or j.dag_id = %(dag_id)s::uuid)
  and (%(def_id)s::uuid is null or j.def_id = %(def_id)s::uuid)
  and (%(after)s::uuid is null or j.job_id > %(after)s::uuid)
order by j.job_id
limit %(limit)s::int;

-- name: list_dag_jobs
select j.*, d.version as def_version
from jobs j join job_definitions d on d.def_id = j.def_id
where j.dag_id = %(dag_id)s::uuid
  and (%(state)s::text is null or j.state = %(state)s::text)
  and (%(after)s::text is null or j.key > %(after)s::text)
order by j.key
limit %(limit)s::int;

-- name: fail_job
-- One clock reading per statement (c.t): two clock_timestamp() calls in one
-- row can differ, and a job's update_time must equal its end_time.
update jobs
set state = 'FAILED', error = %(error)s::text, end_time = c.t, update_time = c.t, lease_expire_time = null
from (select clock_timestamp() as t) c
where job_id = %(job_id)s::uuid;

-- name: skip_descendants
-- Returns how many jobs were skipped per namespace and kind (counts, not
-- rows: a handful at most, for the DAG counters and the metrics).
-- Each skipped job's error names the ancestor whose failure skipped it.
with recursive below (job_id) as (
    select child_job_id from dependencies
    where dag_id = %(dag_id)s::uuid and parent_job_id = %(job_id)s::uuid
    union
    select e.child_job_id
    from dependencies e join below b on e.parent_job_id = b.job_id
    where e.dag_id = %(dag_id)s::uuid
), skipped as (
    update jobs j
    set state = 'SKIPPED', end_time = c.t, update_time = c.t,
        error = 'skipped: ancestor ' || a.key || ' (job ' || a.job_id || ') failed'
    from (select clock_timestamp() as t) c, (select key, job_id from jobs where job_id = %(job_id)s::uuid) a
    where j.job_id in (select job_id from below) and j.state = 'PENDING'
    returning j.namespace_id, j.kind
)
select namespace_id, kind, count(*)::bigint as skipped
from skipped
group by namespace_id, kind;

-- name: insert_standalone_jobs
-- READY standalone jobs (no DAG), claimable at once: the one enqueue path of
-- Tick (a batch of one) and of the cron scheduler (every tick fired in a
-- pass). A null due time means now; cron fires pass their scheduled time,
-- capped at clock_timestamp() so that a fire from a clock running a few
-- milliseconds ahead of the database's is still claimable at once.
insert into jobs (job_id, namespace_id, def_id, kind, key, state, max_attempts, priority, payload, due_time)
select job_id, namespace_id, def_id, kind, key, 'READY', max_attempts, priority, payload,
       least(due_time, clock_timestamp())
from unnest(
    %(job_ids)s::uuid[], %(namespace_ids)s::text[], %(def_ids)s::uuid[], %(keys)s::text[],
    %(max_attempts)s::int[], %(priorities)s::int[], %(payloads)s::jsonb[], %(kinds)s::text[],
    %(due_times)s::timestamptz[]
) as x (job_id, namespace_id, def_id, key, max_attempts, priority, payload, kind, due_time);

-- name: lock_jobs
-- Locked in job_id order so concurrent batches cannot deadlock.
select j.job_id, j.namespace_id, j.dag_id, j.state, j.attempt, j.max_attempts, j.priority, j.worker_id,
       d.kind, d.backoff_initial, d.backoff_max, d.backoff_multiplier
from jobs j join job_definitions d on d.def_id = j.def_id
where j.job_id = any(%(job_ids)s::uuid[])
order by j.job_id
for update of j;

-- name: retry_jobs
-- Back to READY with the next attempt number, due after its backoff.
update jobs j
set state = 'READY', attempt = j.attempt + 1, error = x.error,
    due_time = clock_timestamp() + x.delay, update_time = clock_timestamp(),
    start_time = null, lease_expire_time = null, worker_id = ''
from unnest(%(job_ids)s::uuid[], %(errors)s::text[], %(delays)s::interval[]) as x (job_id, error, delay)
where j.job_id = x.job_id;

-- name: succeed_jobs
-- Jobs to SUCCEEDED with their results, with everything a success implies in
-- the same statement: each child whose last parent this was READY (cost:
-- the number of children, found through the edge key), and the DAG counters
-- down (a RUNNING DAG whose count reaches 0 ends
-- SUCCEEDED). Rows are locked in job_id order (children, then DAGs, likewise)
-- so concurrent batches cannot deadlock each other.
-- `decided` means the caller locked the job and transitions.decide_complete
-- said SUCCEED. Otherwise the statement applies the success only where
-- decide_complete would answer SUCCEED: the job READY or RUNNING, at the
-- attempt named (if one is: the fence), and leased to the worker named (if
-- one is: decide_complete's `by`). A dispatcher cycle and a unary
-- CompleteJob send their successes this way first and skip the
-- lock-and-decide round trip; jobs not returned (a repeat, a stale attempt,
-- a job in another state) take the full path, which gives the exact answer.
-- A token's namespace (namespace_id) limits either way; null skips it.
-- Returns the jobs it completed.
with r as (
    select *
    from unnest(
        %(job_ids)s::uuid[], %(attempts)s::int[], %(results)s::jsonb[], %(namespace_ids)s::text[],
        %(worker_ids)s::text[], %(decided)s::boolean[]
    ) as r (job_id, attempt, result, namespace_id, worker_id, decided)
), held as (
    select j.job_id, r.result
    from jobs j join r on r.job_id = j.job_id
    where (r.namespace_id is null or j.namespace_id = r.namespace_id)
      and (r.decided
           or (j.state in ('READY', 'RUNNING')
               and (r.attempt is null or j.attempt = r.attempt)
               and (r.worker_id is null or j.worker_id = r.worker_id)))
    order by j.job_id
    for update of j
), done as (
    update jobs j
    set state = 'SUCCEEDED', result = h.result, end_time = c.t, update_time = c.t, lease_expire_time = null
    from held h, (select clock_timestamp() as t) c
    where j.job_id = h.job_id
    returning j.job_id, j.dag_id
), kids as (
    select e.child_job_id as job_id, count(*)::int as n
    from done p
    join dependencies e on e.dag_id = p.dag_id and e.parent_job_id = p.job_id
    group by e.child_job_id
), locked as (
    select c.job_id, k.n
    from jobs c join kids k on k.job_id = c.job_id
    order by c.job_id
    for update of c
), dec as (
    update jobs c
    set pending_parents = c.pending_parents - l.n,
        state = case when c.pending_parents = l.n then 'READY' else c.state end,
        due_time = case when c.pending_parents = l.n then clock_timestamp() + d.delay_after_parents else c.due_time end,
        update_time = clock_timestamp()
    from locked l, job_definitions d
    where c.job_id = l.job_id and d.def_id = c.def_id and c.state = 'PENDING'
), finished as (
    select g.dag_id, x.n
    from (select dag_id, count(*) as n from done where dag_id is not null group by dag_id) x
    join dags g on g.dag_id = x.dag_id
    order by g.dag_id
    for update of g
), counted as (
    -- dag_jobs_finished without failures: a success never fails a DAG.
    update dags g
    set unfinished_job_count = g.unfinished_job_count - f.n,
        state = chronosched_dag_state(g.state, g.unfinished_job_count - f.n, false),
        end_time = case
            when chronosched_dag_state(g.state, g.unfinished_job_count - f.n, false) <> g.state then c.t
            else g.end_time
        end,
        update_time = c.t
    from finished f, (select clock_timestamp() as t) c
    where g.dag_id = f.dag_id
)
select job_id from done;

-- name: dag_jobs_finished
-- Counts terminal jobs down per DAG (callers pass DAG ids sorted, to lock in
-- a fixed order); a DAG ends SUCCEEDED when its count reaches 0 while
-- RUNNING, or FAILED at once when one of its jobs failed for good.
-- The state itself comes from chronosched_dag_state (migration 0004).
update dags g
set unfinished_job_count = g.unfinished_job_count - x.finished,
    state = chronosched_dag_state(g.state, g.unfinished_job_count - x.finished, x.failed),
    end_time = case
        when chronosched_dag_state(g.state, g.unfinished_job_count - x.finished, x.failed) <> g.state then c.t
        else g.end_time
    end,
    update_time = c.t
from unnest(%(dag_ids)s::uuid[], %(finished)s::bigint[], %(failed)s::boolean[]) as x (dag_id, finished, failed),
    (select clock_timestamp() as t) c
where g.dag_id = x.dag_id;

-- name: tick_one
-- Tick in one statement and one round trip (autocommit): hold the namespace
-- (KEY SHARE) and the live version (FOR SHARE) as hold_namespace and
-- hold_definition do, insert the job READY as insert_standalone_jobs does
-- (key = the definition's name, its attempts
-- and priority), and return it as get_job reads it. No row means that
-- something is missing (the namespace or the version), the version is
-- retired, or it is not of the kind the caller read from its cache of
-- versions: the caller then takes the two-trip path, which says which. The
-- payload is merged and checked by the caller beforehand.
-- Hand-off: given a worker_id (a connected worker of this server has a
-- slot held for the kind), the job is inserted RUNNING and leased to that
-- worker, as a claim would lease it; unless a due READY job of the same
-- namespace and kind at the same or a higher priority exists (locked by a
-- claim or not), which it must not overtake: then it goes in READY as above
-- and waits its turn.
-- With a request_id (no hand-off then), the key goes in first, naming the
-- job; the job only if the key did, and the key only if the job will (a
-- live version), so both or neither commit. A key there already (a replay,
-- or a concurrent first call, waited for) makes nothing: the caller's
-- transaction path then returns the first call's job.
with ns as (
    select namespace_id from namespaces where namespace_id = %(namespace_id)s::text for key share
), d as (
    select d.*
    from job_definitions d join ns on ns.namespace_id = d.namespace_id
    where d.def_id = %(def_id)s::uuid and d.kind = %(kind)s::text
    for share of d
), c as (
    select clock_timestamp() as t
-- Materialized: inlined, the check ran once for each of the four uses of
-- h.running below.
), h as materialized (
    select %(worker_id)s::text is not null and not exists (
        select 1
        from jobs r, d
        -- The namespace and kind as given, not as d's columns: then they
        -- bound the index scan whatever jobs' statistics say. Joined to d
        -- only, a plan made on statistics that found no READY job read
        -- every READY job of every namespace by due time.
        where r.state = 'READY' and r.namespace_id = %(namespace_id)s::text and r.kind = %(kind)s::text
            and r.priority >= d.default_priority and r.due_time <= c.t
    ) as running
    from c
), r as (
    insert into request_ids (namespace_id, method, request_id, resource_ids)
    select d.namespace_id, %(method)s::text, %(request_id)s::text, array[%(job_id)s::uuid]
    from d
    where %(request_id)s::text is not null and d.retire_time is null
    on conflict do nothing
    returning request_id
), j as (
    insert into jobs (
        job_id, namespace_id, def_id, kind, key, state, max_attempts, priority, payload, due_time,
        start_time, update_time, lease_expire_time, worker_id
    )
    select %(job_id)s::uuid, d.namespace_id, d.def_id, d.kind, d.name,
           case when h.running then 'RUNNING' else 'READY' end, d.max_attempts,
           d.default_priority, %(payload)s::jsonb, c.t,
           case when h.running then c.t end, c.t,
           case when h.running then c.t + %(lease)s::interval end,
           case when h.running then %(worker_id)s::text else '' end
    from d, c, h
    where d.retire_time is null and (%(request_id)s::text is null or exists (select from r))
    returning *
)
select j.*, d.version as def_version,
    case when j.state = 'RUNNING' then d.execution_timeout end as execution_timeout
from j, d;
