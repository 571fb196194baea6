-- name: frontier_counts
-- READY jobs by namespace and kind for /metrics, and whether any live worker
-- stream serves that pair (a presence row in worker_streams, not expired,
-- whose kinds hold the kind and whose namespaces hold the namespace or that
-- serves all). The claim's partial index holds only READY jobs and leads
-- with (namespace_id, kind), so this is an index scan the size of the
-- runnable work, plus one look at the presence rows (one per open stream)
-- per pair; the collector runs it at most every few seconds.
select r.namespace_id, r.kind, count(*)::bigint as jobs,
       not exists (
           select 1
           from worker_streams w
           where w.expire_time > now()
             and r.kind = any (w.kinds)
             and (w.all_namespaces or r.namespace_id = any (w.namespaces))
       ) as unserved
from jobs r
where r.state = 'READY'
group by r.namespace_id, r.kind
