-- name: load_schedules
-- The active schedule set: the latest version of every definition name, if
-- it carries a cron spec, is not retired and its schedule is not paused,
-- with the parts of its anchor (its create time, the last tick decided for
-- the name, the last resume). Read by every scheduler at least once a second.
with latest as (
    select distinct on (namespace_id, name) *
    from job_definitions
    order by namespace_id, name, version desc
)
select l.def_id, l.namespace_id, l.name, l.version, l.kind, l.payload_template, l.cron_spec,
       l.time_zone, l.misfire_policy, l.overlap_policy, l.starting_deadline, l.max_attempts,
       l.default_priority, l.create_time, s.resumed_at, f.scheduled_time as last_scheduled_time
from latest l
left join schedules s on s.namespace_id = l.namespace_id and s.name = l.name
left join lateral (
    select c.scheduled_time
    from cron_fires c
    where c.namespace_id = l.namespace_id and c.name = l.name
    order by c.scheduled_time desc
    limit 1
) f on true
where l.cron_spec <> '' and l.retire_time is null and not coalesce(s.paused, false);

-- name: database_clock
select clock_timestamp() as db_time;

-- name: previous_fired_runs
-- Per (namespace, name, before): the latest FIRED tick before `before` and
-- the state of its job (live table first, then history; null when gone).
select x.namespace_id, x.name, f.job_id, coalesce(j.state, h.state) as state
from unnest(%(namespace_ids)s::text[], %(names)s::text[], %(befores)s::timestamptz[])
    as x (namespace_id, name, before)
join lateral (
    select c.job_id
    from cron_fires c
    where c.namespace_id = x.namespace_id and c.name = x.name and c.status = 'FIRED'
      and c.scheduled_time < x.before
    order by c.scheduled_time desc
    limit 1
) f on true
left join jobs j on j.job_id = f.job_id
left join jobs_history h on h.job_id = f.job_id;

-- name: insert_fires
-- Records decided ticks in the ledger; a tick another replica recorded
-- first is left alone (ON CONFLICT DO NOTHING), and only the rows that went
-- in come back, so only their jobs are enqueued. Rows go in key order so two
-- replicas inserting the same ticks wait on each other instead of
-- deadlocking. Checked at fire time, whatever the scheduler loaded: a tick
-- never fires while its name is paused, at or before its last resume, for
-- a version that a newer one (created before the tick) replaced, or for a
-- retired version. The owning version is held FOR SHARE until the fire
-- commits, so a retire either waits for the fire (which was then made
-- before the retire) or goes first, and this statement, having waited for
-- it, sees the version retired and records nothing.
insert into cron_fires (
    namespace_id, name, scheduled_time, def_id, def_version, status, reason, job_id, fire_time
)
select x.namespace_id, x.name, x.scheduled_time, x.def_id, x.def_version, x.status, x.reason, x.job_id,
       coalesce(%(now)s::timestamptz, now())
from unnest(
    %(namespace_ids)s::text[], %(names)s::text[], %(scheduled_times)s::timestamptz[],
    %(def_ids)s::uuid[], %(def_versions)s::int[], %(statuses)s::text[], %(reasons)s::text[],
    %(job_ids)s::uuid[]
) as x (namespace_id, name, scheduled_time, def_id, def_version, status, reason, job_id)
join job_definitions owner on owner.def_id = x.def_id
where owner.retire_time is null
  and not exists (
        select 1 from schedules s
        where s.namespace_id = x.namespace_id and s.name = x.name
          and (s.paused or s.resumed_at >= x.scheduled_time)
    )
  and not exists (
        select 1 from job_definitions d
        where d.namespace_id = x.namespace_id and d.name = x.name
          and d.version > x.def_version and d.create_time < x.scheduled_time
    )
order by x.namespace_id, x.name, x.scheduled_time
for share of owner
on conflict (namespace_id, name, scheduled_time) do nothing
returning namespace_id, name, scheduled_time, status, job_id;

-- name: list_fires
-- A name's ledger, newest tick first, keyset-paged by scheduled time.
select *
from cron_fires
where namespace_id = %(namespace_id)s::text and name = %(name)s::text
  and (%(before)s::timestamptz is null or scheduled_time < %(before)s::timestamptz)
order by scheduled_time desc
limit %(limit)s::int;

-- name: get_schedule
-- The schedule of a name: its latest version (retired or not) and its pause state.
select d.def_id, d.namespace_id, d.name, d.version, d.cron_spec, d.time_zone,
       coalesce(s.paused, false) as paused, s.paused_at, s.resumed_at, d.retire_time, now() as as_of
from job_definitions d
left join schedules s on s.namespace_id = d.namespace_id and s.name = d.name
where d.namespace_id = %(namespace_id)s::text and d.name = %(name)s::text
order by d.version desc
limit 1;

-- name: pause_schedule
-- Pausing a paused schedule changes nothing (its pause time stays).
insert into schedules (namespace_id, name, paused, paused_at, update_time)
values (%(namespace_id)s::text, %(name)s::text, true, coalesce(%(now)s::timestamptz, now()),
        coalesce(%(now)s::timestamptz, now()))
on conflict (namespace_id, name) do update
set paused = true, paused_at = excluded.paused_at, update_time = excluded.update_time
where not schedules.paused;

-- name: resume_schedule
-- Only a paused schedule resumes: a resume time is an anchor, and moving it
-- on an active schedule could drop a tick that is due but not yet fired.
update schedules
set paused = false, resumed_at = coalesce(%(now)s::timestamptz, now()),
    update_time = coalesce(%(now)s::timestamptz, now())
where namespace_id = %(namespace_id)s::text and name = %(name)s::text and paused;

-- name: clear_pause_state
-- Retiring a name forgets its pause state: a name created again starts with
-- an active schedule, as a brand-new name does.
delete from schedules
where namespace_id = %(namespace_id)s::text and name = %(name)s::text;
