-- The frontier wake-up fired for every INSERT statement on the frontier, also
-- for those that inserted nothing: every batch of results runs succeed_jobs,
-- whose insert of unlocked children is empty when the jobs have none, and
-- each such empty insert woke every dispatcher for a claim that found
-- nothing (about one extra cycle per batch of results). The trigger now sees
-- the statement's new rows and stays silent when there are none.
create or replace function chronosched_notify_frontier() returns trigger
language plpgsql as $$
begin
    if exists (select 1 from inserted) then
        perform pg_notify('chronosched_frontier', '');
    end if;
    return null;
end;
$$;

drop trigger frontier_notify on frontier;
create trigger frontier_notify after insert on frontier
    referencing new table as inserted
    for each statement execute function chronosched_notify_frontier();
