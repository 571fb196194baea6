-- name: claim_jobs_in
-- Takes up to n due jobs for a worker serving the given namespaces and kinds,
-- highest priority first. Each (namespace, kind) pair is read in the READY
-- index's order with its own limit, so a claim never sorts all the ready
-- work; SKIP LOCKED lets any number of servers claim at once without ever
-- leasing a job twice. The jobs become RUNNING with a lease in the same
-- statement (which takes them out of the READY indexes).
with picked as (
    select c.job_id
    from unnest(%(namespaces)s::text[]) as n (namespace_id)
    cross join unnest(%(kinds)s::text[]) as k (kind)
    cross join lateral (
        select r.job_id, r.priority, r.due_time
        from jobs r
        where r.state = 'READY' and r.namespace_id = n.namespace_id and r.kind = k.kind
          and r.due_time <= clock_timestamp()
        order by r.priority desc, r.due_time, r.job_id
        limit %(n)s::int
        for update of r skip locked
    ) c
    order by c.priority desc, c.due_time, c.job_id
    limit %(n)s::int
)
update jobs j
set state = 'RUNNING', start_time = c.t, update_time = c.t,
    lease_expire_time = c.t + %(lease)s::interval, worker_id = %(worker_id)s::text
from job_definitions d, (select clock_timestamp() as t) c
-- No `j.state = 'READY'`: the rows picked are locked above and were READY
-- then, so it would only make the READY indexes usable here. Before jobs'
-- first ANALYZE, a generic plan took one of them for these ids, walking it
-- whole (6 ms a claim, against 0.6 ms by the primary key).
where j.job_id = any(array(select job_id from picked)) and d.def_id = j.def_id
returning j.*, d.version as def_version, d.execution_timeout,
    -- For the parent-done -> child-assigned metric: when a DAG child's last
    -- parent succeeded (succeed_jobs made it due that plus the delay after
    -- parents; the claim leaves due_time alone). Only first attempts of
    -- jobs with a parent (one probe of the child index per claimed job).
    case when j.attempt = 1 and j.dag_id is not null
              and exists (select 1 from dependencies e where e.child_job_id = j.job_id)
         then j.due_time - d.delay_after_parents
    end as parents_done_time;

-- name: claim_jobs_any
-- The same by one walk of the global READY priority index, filtered by kind
-- and, unless the worker serves every namespace, by its namespaces: for a
-- worker of all namespaces, and for one naming many (namespace, kind) pairs
-- (more than leases.MANY_PAIRS). Probing each pair would read, and lock until
-- the commit, up to n rows per pair: for a worker naming 1,000 namespaces and
-- 5 kinds, a claim of 16 locked every ready job and took 25 ms against 1 ms
-- for the walk. The walk reads past other namespaces' jobs, which costs more
-- only when the named ones hold few of the ready jobs. Run on its generic
-- plan (use_generic_plans), the namespace test is a filter on that walk
-- either way. From `update` on it is claim_jobs_in word for word (named
-- queries are static text; tests/unit/test_one_home.py holds the two tails
-- equal).
with picked as (
    select r.job_id
    from jobs r
    -- `like`, not `=`: the predicate of jobs_ready_any_namespace_idx, which
    -- `state = 'READY'` would not prove, and which keeps jobs_ready_idx out
    -- of this walk's reach (migration 0017).
    where r.state like 'READY'
      -- IN (select ...) rather than = any(...): PostgreSQL hashes the list
      -- once per claim instead of comparing each walked row against all of
      -- it (a worker may name 1,000 namespaces).
      and (%(all_namespaces)s::boolean or r.namespace_id in (select unnest(%(namespaces)s::text[])))
      and r.kind = any(%(kinds)s::text[]) and r.due_time <= clock_timestamp()
    -- -priority: the order of jobs_ready_any_namespace_idx (migration 0014).
    order by -r.priority, r.due_time, r.job_id
    limit %(n)s::int
    for update of r skip locked
)
update jobs j
set state = 'RUNNING', start_time = c.t, update_time = c.t,
    lease_expire_time = c.t + %(lease)s::interval, worker_id = %(worker_id)s::text
from job_definitions d, (select clock_timestamp() as t) c
-- No `j.state = 'READY'`: the rows picked are locked above and were READY
-- then, so it would only make the READY indexes usable here. Before jobs'
-- first ANALYZE, a generic plan took one of them for these ids, walking it
-- whole (6 ms a claim, against 0.6 ms by the primary key).
where j.job_id = any(array(select job_id from picked)) and d.def_id = j.def_id
returning j.*, d.version as def_version, d.execution_timeout,
    -- For the parent-done -> child-assigned metric: when a DAG child's last
    -- parent succeeded (succeed_jobs made it due that plus the delay after
    -- parents; the claim leaves due_time alone). Only first attempts of
    -- jobs with a parent (one probe of the child index per claimed job).
    case when j.attempt = 1 and j.dag_id is not null
              and exists (select 1 from dependencies e where e.child_job_id = j.job_id)
         then j.due_time - d.delay_after_parents
    end as parents_done_time;

-- name: extend_leases
-- Only attempts leased to the worker that asks, in its token's namespace
-- (null: any): a stream cannot keep another worker's lease alive.
with held as (
    select j.job_id
    from jobs j
    join unnest(%(job_ids)s::uuid[], %(attempts)s::int[], %(worker_ids)s::text[], %(namespace_ids)s::text[])
        as r (job_id, attempt, worker_id, namespace_id)
      on r.job_id = j.job_id and r.attempt = j.attempt
    where j.state = 'RUNNING' and j.worker_id = r.worker_id
      and (r.namespace_id is null or j.namespace_id = r.namespace_id)
    order by j.job_id
    for update of j
)
update jobs j
set lease_expire_time = clock_timestamp() + %(lease)s::interval
from held
where j.job_id = held.job_id
returning j.job_id, j.attempt, j.lease_expire_time;

-- name: lock_expired_leases
select j.job_id, j.dag_id, j.attempt, j.max_attempts, j.worker_id,
       d.kind, d.backoff_initial, d.backoff_max, d.backoff_multiplier
from jobs j join job_definitions d on d.def_id = j.def_id
where j.state = 'RUNNING' and j.lease_expire_time < clock_timestamp()
order by j.lease_expire_time
limit %(limit)s::int
for update of j skip locked;

-- name: lock_unheld_leases
-- RUNNING attempts leased to a worker id other than those the worker lists
-- as held. Walks the RUNNING rows (the lease index), which number at most the
-- slots of all connected workers. Rows another transaction holds are left to
-- it (their lease still bounds them). Only in the namespace the worker's
-- token is limited to (null: any), so a worker id reused under the token of
-- another namespace takes nothing back there.
select j.job_id, j.dag_id, j.attempt, j.max_attempts, j.worker_id,
       d.kind, d.backoff_initial, d.backoff_max, d.backoff_multiplier
from jobs j join job_definitions d on d.def_id = j.def_id
where j.state = 'RUNNING' and j.worker_id = %(worker_id)s::text
  and (%(namespace_id)s::text is null or j.namespace_id = %(namespace_id)s::text)
  and (j.job_id, j.attempt) not in (
      select * from unnest(%(job_ids)s::uuid[], %(attempts)s::int[])
  )
order by j.job_id
for update of j skip locked;

-- name: leased_to
-- Of the attempts a reconnecting worker says it holds, those really leased
-- to it: RUNNING at that attempt, under its worker id, in its namespace.
select j.job_id, j.attempt
from jobs j
join unnest(%(job_ids)s::uuid[], %(attempts)s::int[]) as r (job_id, attempt)
  on r.job_id = j.job_id and r.attempt = j.attempt
where j.state = 'RUNNING' and j.worker_id = %(worker_id)s::text
  and (%(namespace_id)s::text is null or j.namespace_id = %(namespace_id)s::text);

-- name: notify_cancel
select pg_notify('chronosched_cancel', %(payload)s::text);

-- name: db_now
select clock_timestamp() as now;

-- name: release_unsent
-- Claimed for a stream that closed before the assignment could be sent: the
-- worker never saw the attempt, so it goes straight back to READY with the
-- same attempt number and its due time (its place in line) instead of
-- waiting for its lease to expire.
update jobs j
set state = 'READY', start_time = null, lease_expire_time = null, worker_id = '', update_time = c.t
from unnest(%(job_ids)s::uuid[], %(attempts)s::int[]) as x (job_id, attempt),
    (select clock_timestamp() as t) c
where j.job_id = x.job_id and j.attempt = x.attempt and j.state = 'RUNNING';

-- name: configure_session
-- Every pooled connection of the server, once when it opens. A generic plan
-- (the cycle's, and any statement psycopg has prepared) is kept until jobs'
-- statistics change. One made while jobs was empty or small scans the whole
-- table: after a 20,000-job drain a Tick took 21 to 23 ms instead of 4, until
-- autovacuum analyzed jobs (up to a minute later, or more under load). The
-- server's statements are all meant to be index-driven, so sequential scans
-- go off: such a plan then takes the indexes it takes anyway with statistics.
-- A statement no index serves still scans.
select set_config('enable_seqscan', 'off', false);

-- name: use_generic_plans
-- For the rest of the transaction (a dispatcher cycle or its results
-- applied apart, or a unary CompleteJob or FailJob): run the prepared
-- statements on their generic plans instead of planning each execution anew. The cycle's statements are
-- index-driven whatever their parameters (plans checked with EXPLAIN
-- EXECUTE). Planning was a quarter of the database time of a 16-job cycle,
-- and up to half of a unary success's (about 1 ms of 2, read-back included).
-- Bitmap scans go off too: they return rows out of index order, so a claim
-- planned on one must read every READY job it could take and sort them.
-- Before jobs' first ANALYZE the walk's plan did (24 to 29 ms a claim of 16
-- from 20,000 READY jobs, against 1 ms in index order). The cycle's other
-- statements look rows up by key arrays, which a plain index scan serves.
select set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('enable_bitmapscan', 'off', true);
