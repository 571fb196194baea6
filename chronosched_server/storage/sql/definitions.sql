-- name: lock_definition_name
-- Serialises version numbering per (namespace, name) without locking the table.
select pg_advisory_xact_lock(hashtextextended(%(namespace_id)s::text || '/' || %(name)s::text, 0));

-- name: next_definition_version
select coalesce(max(version), 0) + 1 as version
from job_definitions
where namespace_id = %(namespace_id)s::text and name = %(name)s::text;

-- name: insert_definition
insert into job_definitions (
    def_id, namespace_id, name, version, kind, payload_template, cron_spec, time_zone,
    misfire_policy, overlap_policy, starting_deadline, max_attempts, backoff_initial,
    backoff_max, backoff_multiplier, execution_timeout, default_priority, delay_after_parents
) values (
    %(def_id)s::uuid, %(namespace_id)s::text, %(name)s::text, %(version)s::int, %(kind)s::text,
    %(payload_template)s::jsonb, %(cron_spec)s::text, %(time_zone)s::text,
    %(misfire_policy)s::text, %(overlap_policy)s::text, %(starting_deadline)s::interval,
    %(max_attempts)s::int, %(backoff_initial)s::interval, %(backoff_max)s::interval,
    %(backoff_multiplier)s::float8, %(execution_timeout)s::interval, %(default_priority)s::int,
    %(delay_after_parents)s::interval
)
returning *, now() as as_of;

-- name: get_definition
select *, now() as as_of
from job_definitions
where namespace_id = %(namespace_id)s::text and def_id = %(def_id)s::uuid;

-- name: list_definitions
select *, now() as as_of
from job_definitions
where namespace_id = %(namespace_id)s::text
  and (%(name)s::text is null or name = %(name)s::text)
  and (%(after)s::uuid is null or def_id > %(after)s::uuid)
order by def_id
limit %(limit)s::int;

-- name: definitions_by_ids
-- The versions new DAG jobs will reference, held (FOR SHARE, in id order)
-- until the jobs are in: a concurrent retire waits for them, or goes first
-- and this read sees its retire_time (never jobs of a retired version made
-- after its retire). Shares do not block each other, nor FK checks.
select def_id, namespace_id, name, version, kind, payload_template, max_attempts, default_priority,
       retire_time
from job_definitions
where namespace_id = %(namespace_id)s::text and def_id = any(%(def_ids)s::uuid[])
order by def_id
for share;

-- name: hold_definition
-- One version a Tick will enqueue a job of, held like definitions_by_ids.
select *, now() as as_of
from job_definitions
where namespace_id = %(namespace_id)s::text and def_id = %(def_id)s::uuid
for share;

-- name: lock_live_versions
-- Retire, step 1: the name's live versions, locked in id order (the order
-- definitions_by_ids holds them in, so the two cannot deadlock). Waits for
-- every transaction still making jobs of them.
select def_id
from job_definitions
where namespace_id = %(namespace_id)s::text and name = %(name)s::text and retire_time is null
order by def_id
for no key update;

-- name: retire_live_versions
-- Retire, step 2: one retire time for the whole line, read after the locks
-- were granted, so every job and cron fire made of these versions was
-- created (and committed) before it.
with t as materialized (
    select clock_timestamp() as retire_time
)
update job_definitions d
set retire_time = t.retire_time
from t
where d.namespace_id = %(namespace_id)s::text and d.name = %(name)s::text and d.retire_time is null;
