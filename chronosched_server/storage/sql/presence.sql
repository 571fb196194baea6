-- Presence of open Dequeue streams (migration 0008, docs/workers.md,
-- "Connected workers").

-- name: upsert_worker_streams
-- Every open stream of one replica in one statement: new streams are
-- inserted, known ones get their counts, last-heard time and expiry renewed.
-- `streams` is a JSON array of objects; `silent_s` is how long ago the
-- replica last heard from the worker and `connected_s` how long ago the
-- stream subscribed, so both times are database time.
insert into worker_streams as w (
    stream_id, worker_id, replica_id, namespaces, all_namespaces, kinds,
    slots, jobs_in_flight, connect_time, heartbeat_time, expire_time
)
select s.stream_id, s.worker_id, %(replica_id)s::text, s.namespaces, s.all_namespaces, s.kinds,
       s.slots, s.jobs_in_flight,
       now() - make_interval(secs => s.connected_s),
       now() - make_interval(secs => least(s.silent_s, s.connected_s)),
       now() + make_interval(secs => %(ttl_s)s::float8)
from jsonb_to_recordset(%(streams)s::jsonb) as s (
    stream_id uuid, worker_id text, namespaces text[], all_namespaces boolean, kinds text[],
    slots int, jobs_in_flight int, silent_s float8, connected_s float8
)
on conflict (stream_id) do update
set slots = excluded.slots,
    jobs_in_flight = excluded.jobs_in_flight,
    -- The two clocks behind these times (the replica's monotonic one and
    -- the database's) drift by microseconds; never before the connect.
    heartbeat_time = greatest(excluded.heartbeat_time, w.connect_time),
    expire_time = excluded.expire_time;

-- name: delete_closed_worker_streams
-- The replica's rows of streams it no longer holds.
delete from worker_streams
where replica_id = %(replica_id)s::text
  and stream_id <> all (%(open)s::uuid[]);

-- name: delete_expired_worker_streams
-- Rows of replicas that stopped refreshing them (died without closing).
delete from worker_streams
where expire_time < now();

-- name: list_worker_streams
-- Unexpired streams in (worker_id, stream_id) order; `namespace_id` keeps
-- those serving it (naming it, or every namespace).
select stream_id, worker_id, replica_id, namespaces, all_namespaces, kinds,
       slots, jobs_in_flight, connect_time, heartbeat_time
from worker_streams
where expire_time > now()
  and (%(namespace_id)s::text is null
       or all_namespaces
       or %(namespace_id)s::text = any (namespaces))
  and (%(after_worker)s::text is null
       or (worker_id, stream_id) > (%(after_worker)s::text, %(after_stream)s::uuid))
order by worker_id, stream_id
limit %(limit)s::int;

-- name: touch_served_kinds
-- The (namespace, kind) pairs one replica's streams serve now ('' for a
-- stream serving every namespace), seen at this refresh.
insert into served_kinds as s (scope, kind, last_seen)
select distinct p.scope, p.kind, now()
from unnest(%(scopes)s::text[], %(kinds)s::text[]) as p (scope, kind)
on conflict (scope, kind) do update set last_seen = excluded.last_seen
where s.last_seen < excluded.last_seen;

-- name: kind_served_since
-- Whether a worker serving `kind` in the namespace is connected now or was
-- within `window_s` seconds.
select exists (
    select 1 from worker_streams w
    where w.expire_time > now()
      and (w.all_namespaces or %(namespace_id)s::text = any (w.namespaces))
      and %(kind)s::text = any (w.kinds)
) or exists (
    select 1 from served_kinds s
    where s.scope in (%(namespace_id)s::text, '')
      and s.kind = %(kind)s::text
      and s.last_seen > now() - make_interval(secs => %(window_s)s::float8)
) as served;
