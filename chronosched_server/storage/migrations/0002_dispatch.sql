-- Dispatch support: wake-ups, lease expiry and the all-namespaces claim.

-- One wake-up per transaction that adds runnable work: a statement trigger
-- fires per INSERT statement, and PostgreSQL folds identical notifications
-- raised inside one transaction into one.
create function chronosched_notify_frontier() returns trigger
language plpgsql as $$
begin
    perform pg_notify('chronosched_frontier', '');
    return null;
end;
$$;

create trigger frontier_notify after insert on frontier
    for each statement execute function chronosched_notify_frontier();

-- The reaper looks only at leased jobs, ordered by expiry.
create index jobs_lease_idx on jobs (lease_expire_time) where state = 'RUNNING';

-- Workers serving every namespace claim in global priority order.
create index frontier_any_namespace_idx on frontier (priority desc, due_time, job_id);
