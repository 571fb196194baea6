-- Facts for Job.waiting, read with a page of jobs (chronosched_server/waiting.py).

-- name: waiting_pending
-- For each PENDING job of a page: its DAG's state, how many parents have not
-- succeeded, and the first few of them in key order (one row per parent
-- shown; a job with none shown still has its row). Parents are looked up by
-- child (dependencies_child_idx), and only for DAGs already started.
select c.job_id, g.state as dag_state, j.pending_parents as unfinished,
       p.key as parent_key, p.job_id as parent_job_id, p.state as parent_state
from unnest(%(job_ids)s::uuid[]) as c (job_id)
join jobs j on j.job_id = c.job_id
left join dags g on g.dag_id = j.dag_id
left join lateral (
    select pj.key, pj.job_id, pj.state
    from dependencies d
    join jobs pj on pj.job_id = d.parent_job_id
    where d.child_job_id = c.job_id and pj.state <> 'SUCCEEDED'
    order by pj.key
    limit %(shown)s::int
) p on g.state is distinct from 'PENDING' and j.pending_parents > 0
order by c.job_id, p.key;

-- name: waiting_capacity
-- The live worker streams (ListWorkers' rows) serving each kind in the
-- page's namespace, and the database's clock for due times. A stream's jobs
-- in flight count the jobs the server holds for it (Subscribe.lookahead),
-- which fill no slot yet: slots in use are at most its slots.
select k.kind,
       count(w.stream_id)::int as workers,
       coalesce(sum(w.slots), 0)::int as slots,
       coalesce(sum(least(w.jobs_in_flight, w.slots)), 0)::int as in_flight,
       now() as now
from unnest(%(kinds)s::text[]) as k (kind)
left join worker_streams w
  on w.expire_time > now()
 and (w.all_namespaces or %(namespace_id)s::text = any (w.namespaces))
 and k.kind = any (w.kinds)
group by k.kind;
