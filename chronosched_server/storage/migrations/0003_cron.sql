-- The cron scheduler: the fire ledger, pause state per definition name, and
-- the wake-up that tells every scheduler to reload its schedule set.

-- The fire ledger: one row per tick the scheduler decided on, FIRED (a job
-- was enqueued in the same transaction) or SKIPPED (with the reason). The
-- primary key is what keeps any number of replicas from doubling a fire:
-- each inserts the row with ON CONFLICT DO NOTHING first and enqueues the
-- job only if its row went in. Keyed by definition NAME, not version: the
-- latest version owns the schedule, and a new version must not fire a tick
-- that an older one already fired.
--
-- No foreign key to jobs: jobs move to jobs_history when pruned.
create table cron_fires (
    namespace_id text not null,
    name text not null,
    scheduled_time timestamptz not null,
    def_id uuid not null references job_definitions (def_id),
    def_version integer not null,
    status text not null check (status in ('FIRED', 'SKIPPED')),
    reason text not null default '',
    job_id uuid,
    fire_time timestamptz not null default now(),
    primary key (namespace_id, name, scheduled_time),
    constraint cron_fires_job_check check ((status = 'FIRED') = (job_id is not null))
);
-- The primary key, read backwards, serves ListFires (newest first) and the
-- anchor (the last decided tick of a name). The forbid-overlap check wants
-- the latest FIRED row of a name without walking the SKIPPED ones.
create index cron_fires_fired_idx on cron_fires (namespace_id, name, scheduled_time)
    where status = 'FIRED';

-- Pause state per definition name; a name without a row is not paused.
-- resumed_at is an anchor: ticks at or before it never fire, so the ticks
-- that fell while the schedule was paused are not caught up after a resume.
create table schedules (
    namespace_id text not null references namespaces (namespace_id),
    name text not null,
    paused boolean not null default false,
    paused_at timestamptz,
    resumed_at timestamptz,
    update_time timestamptz not null default now(),
    primary key (namespace_id, name)
);

-- A new definition version or a pause/resume makes every scheduler reload
-- its schedule set at once instead of at its next periodic reload. One
-- notification per statement (and PostgreSQL folds repeats within a
-- transaction).
create function chronosched_notify_schedules() returns trigger
language plpgsql as $$
begin
    perform pg_notify('chronosched_schedules', '');
    return null;
end;
$$;

create trigger job_definitions_notify_schedules after insert on job_definitions
    for each statement execute function chronosched_notify_schedules();

create trigger schedules_notify after insert or update on schedules
    for each statement execute function chronosched_notify_schedules();
