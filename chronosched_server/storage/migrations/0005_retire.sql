-- Retiring definition names, and deleting namespaces.

-- When the version was retired; null while it is live. Retiring a name sets
-- it on every live version of the name at once (one value), and nothing can
-- make a retired version live again: a new line of versions starts with the
-- next version number instead.
alter table job_definitions add column retire_time timestamptz;

-- Definitions stay immutable with one exception: retire_time may be set,
-- once (null -> a time). Any other change raises under the same constraint
-- name as before, so the storage layer maps it to the same error.
create function chronosched_definitions_retire_only() returns trigger
language plpgsql as $$
declare
    unchanged job_definitions := new;
begin
    unchanged.retire_time := null;
    if old.retire_time is null and new.retire_time is not null and unchanged is not distinct from old then
        return new;
    end if;
    raise exception 'rows of % are immutable', tg_table_name
        using errcode = 'integrity_constraint_violation',
              constraint = tg_table_name || '_immutable',
              detail = 'only retire_time may change, once, from null to a time';
end;
$$;

drop trigger job_definitions_immutable on job_definitions;
create trigger job_definitions_immutable before update on job_definitions
    for each row execute function chronosched_definitions_retire_only();

-- A retire (an UPDATE of definitions) and a namespace delete (a DELETE of
-- definitions and schedules) change the active schedule set too: every
-- scheduler reloads at once, as it does on a new version or a pause.
create trigger job_definitions_notify_schedules_change after update or delete on job_definitions
    for each statement execute function chronosched_notify_schedules();

create trigger schedules_notify_delete after delete on schedules
    for each statement execute function chronosched_notify_schedules();
