-- name: claim_jobs
-- Takes up to n due jobs for one worker from the frontier, highest priority
-- first; SKIP LOCKED lets any number of servers claim at once without ever
-- leasing a job twice. The job leaves the frontier and becomes RUNNING with
-- a lease in the same statement.
with picked as (
    select f.job_id
    from frontier f
    where (%(all_namespaces)s::boolean or f.namespace_id = any(%(namespaces)s::text[]))
      and f.kind = any(%(kinds)s::text[])
      and f.due_time <= now()
    order by f.priority desc, f.due_time, f.job_id
    limit %(n)s::int
    for update of f skip locked
), gone as (
    delete from frontier f using picked p where f.job_id = p.job_id returning f.job_id
)
update jobs j
set state = 'RUNNING', start_time = now(), update_time = now(),
    lease_expire_time = now() + %(lease)s::interval, worker_id = %(worker_id)s::text
from gone, job_definitions d
where j.job_id = gone.job_id and d.def_id = j.def_id and j.state = 'READY'
returning j.*, d.version as def_version, d.kind, d.execution_timeout;

-- name: extend_leases
with held as (
    select j.job_id
    from jobs j
    join unnest(%(job_ids)s::uuid[], %(attempts)s::int[]) as r (job_id, attempt)
      on r.job_id = j.job_id and r.attempt = j.attempt
    where j.state = 'RUNNING'
    order by j.job_id
    for update of j
)
update jobs j
set lease_expire_time = now() + %(lease)s::interval
from held
where j.job_id = held.job_id;

-- name: lock_expired_leases
select j.job_id, j.dag_id, j.attempt, j.max_attempts, j.worker_id,
       d.kind, d.backoff_initial, d.backoff_max, d.backoff_multiplier
from jobs j join job_definitions d on d.def_id = j.def_id
where j.state = 'RUNNING' and j.lease_expire_time < now()
order by j.lease_expire_time
limit %(limit)s::int
for update of j skip locked;

-- name: running_jobs_of_dag
select job_id, attempt from jobs where dag_id = %(dag_id)s::uuid and state = 'RUNNING';

-- name: notify_cancel
select pg_notify('chronosched_cancel', %(payload)s::text);

-- name: db_now
select now() as now;
