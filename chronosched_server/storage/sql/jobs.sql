-- name: get_job
-- Live table first, then history: a pruned job is still found.
select j.*, d.version as def_version, d.kind
from jobs j join job_definitions d on d.def_id = j.def_id
where j.job_id = %(job_id)s::uuid and j.namespace_id = %(namespace_id)s::text
union all
select h.*, d.version as def_version, d.kind
from jobs_history h join job_definitions d on d.def_id = h.def_id
where h.job_id = %(job_id)s::uuid and h.namespace_id = %(namespace_id)s::text
limit 1;

-- name: get_jobs_by_ids
select j.*, d.version as def_version, d.kind
from jobs j join job_definitions d on d.def_id = j.def_id
where j.job_id = any(%(job_ids)s::uuid[])
order by array_position(%(job_ids)s::uuid[], j.job_id);

-- name: list_jobs
select j.*, d.version as def_version, d.kind
from jobs j join job_definitions d on d.def_id = j.def_id
where j.namespace_id = %(namespace_id)s::text
  and (%(state)s::text is null or j.state = %(state)s::text)
  and (%(dag_id)s::uuid is null or j.dag_id = %(dag_id)s::uuid)
  and (%(def_id)s::uuid is null or j.def_id = %(def_id)s::uuid)
  and (%(after)s::uuid is null or j.job_id > %(after)s::uuid)
order by j.job_id
limit %(limit)s::int;

-- name: list_dag_jobs
select j.*, d.version as def_version, d.kind
from jobs j join job_definitions d on d.def_id = j.def_id
where j.dag_id = %(dag_id)s::uuid
  and (%(state)s::text is null or j.state = %(state)s::text)
  and (%(after)s::text is null or j.key > %(after)s::text)
order by j.key
limit %(limit)s::int;

-- name: lock_job
select j.job_id, j.namespace_id, j.dag_id, j.state, j.attempt, j.max_attempts, j.priority,
       d.kind, d.backoff_initial, d.backoff_max, d.backoff_multiplier
from jobs j join job_definitions d on d.def_id = j.def_id
where j.job_id = %(job_id)s::uuid
for update of j;

-- name: succeed_job
update jobs
set state = 'SUCCEEDED', result = %(result)s::jsonb, end_time = now(), update_time = now(),
    lease_expire_time = null
where job_id = %(job_id)s::uuid;

-- name: fail_job
update jobs
set state = 'FAILED', error = %(error)s::text, end_time = now(), update_time = now(),
    lease_expire_time = null
where job_id = %(job_id)s::uuid;

-- name: retry_job
with j as (
    update jobs
    set state = 'READY', attempt = attempt + 1, error = %(error)s::text,
        due_time = now() + %(delay)s::interval, update_time = now(),
        start_time = null, lease_expire_time = null, worker_id = ''
    where job_id = %(job_id)s::uuid
    returning job_id, namespace_id, priority, due_time
)
insert into frontier (job_id, namespace_id, kind, priority, due_time)
select job_id, namespace_id, %(kind)s::text, priority, due_time from j
on conflict (job_id) do update set due_time = excluded.due_time;

-- name: remove_from_frontier
delete from frontier where job_id = %(job_id)s::uuid;

-- name: unlock_children
-- Children are locked in job_id order so two parents finishing at once cannot
-- deadlock; a child whose last parent this was enters the frontier in the same
-- statement. Cost: the number of children, found through the edge key.
with kids as (
    select c.job_id
    from dependencies e join jobs c on c.job_id = e.child_job_id
    where e.dag_id = %(dag_id)s::uuid and e.parent_job_id = %(job_id)s::uuid
    order by c.job_id
    for update of c
), dec as (
    update jobs c
    set pending_parents = c.pending_parents - 1,
        state = case when c.pending_parents = 1 then 'READY' else c.state end,
        due_time = case when c.pending_parents = 1 then now() + d.delay_after_parents else c.due_time end,
        update_time = now()
    from kids, job_definitions d
    where c.job_id = kids.job_id and d.def_id = c.def_id and c.state = 'PENDING'
    returning c.job_id, c.namespace_id, d.kind, c.priority, c.due_time, c.state
)
insert into frontier (job_id, namespace_id, kind, priority, due_time)
select job_id, namespace_id, kind, priority, due_time from dec where state = 'READY';

-- name: skip_descendants
with recursive below (job_id) as (
    select child_job_id from dependencies
    where dag_id = %(dag_id)s::uuid and parent_job_id = %(job_id)s::uuid
    union
    select e.child_job_id
    from dependencies e join below b on e.parent_job_id = b.job_id
    where e.dag_id = %(dag_id)s::uuid
)
update jobs
set state = 'SKIPPED', end_time = now(), update_time = now()
where job_id in (select job_id from below) and state = 'PENDING';

-- name: dag_jobs_finished
-- Counts terminal jobs down; the DAG ends SUCCEEDED when the count reaches 0
-- while RUNNING, or FAILED at once when a job failed for good.
update dags
set unfinished_job_count = unfinished_job_count - %(finished)s::bigint,
    state = case
        when state <> 'RUNNING' then state
        when %(failed)s::boolean then 'FAILED'
        when unfinished_job_count - %(finished)s::bigint = 0 then 'SUCCEEDED'
        else state
    end,
    end_time = case
        when state = 'RUNNING'
             and (%(failed)s::boolean or unfinished_job_count - %(finished)s::bigint = 0) then now()
        else end_time
    end,
    update_time = now()
where dag_id = %(dag_id)s::uuid;

-- name: insert_standalone_job
with j as (
    insert into jobs (job_id, namespace_id, def_id, key, state, max_attempts, priority, payload, due_time)
    values (%(job_id)s::uuid, %(namespace_id)s::text, %(def_id)s::uuid, %(key)s::text, 'READY',
            %(max_attempts)s::int, %(priority)s::int, %(payload)s::jsonb, now())
    returning job_id, namespace_id, priority, due_time
)
insert into frontier (job_id, namespace_id, kind, priority, due_time)
select job_id, namespace_id, %(kind)s::text, priority, due_time from j;
