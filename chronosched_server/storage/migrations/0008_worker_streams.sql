-- Presence of open Dequeue streams, one row per stream on any server replica
-- (docs/workers.md, "Connected workers"). A replica inserts the row when the
-- stream subscribes, refreshes all of its rows in one statement every
-- heartbeat interval, and deletes the row when the stream closes. A replica
-- that dies leaves its rows behind: expire_time (the last refresh plus the
-- silence timeout) hides them from ListWorkers, and the lease reaper deletes
-- them.
create table worker_streams (
    stream_id uuid primary key,
    worker_id text not null,
    -- The server process holding the stream (a random id per process).
    replica_id text not null,
    -- The namespaces the worker takes jobs from; empty with all_namespaces.
    namespaces text[] not null,
    all_namespaces boolean not null,
    kinds text[] not null,
    slots int not null,
    jobs_in_flight int not null,
    connect_time timestamptz not null default now(),
    heartbeat_time timestamptz not null default now(),
    expire_time timestamptz not null
);

-- ListWorkers' order and page cursor.
create index worker_streams_order_idx on worker_streams (worker_id, stream_id);
