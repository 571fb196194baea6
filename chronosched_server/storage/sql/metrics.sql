-- name: frontier_counts
-- READY jobs by namespace and kind for /metrics, and whether any live worker
-- stream serves that pair (a presence row in worker_streams, not expired,
-- whose kinds hold the kind and whose namespaces hold the namespace or that
-- serves all). The frontier table holds only READY jobs and its claim index
-- leads with (namespace_id, kind), so this is an index scan the size of the
-- runnable work, plus one look at the presence rows (one per open stream)
-- per pair; the collector runs it at most every few seconds.
select f.namespace_id, f.kind, count(*)::bigint as jobs,
       not exists (
           select 1
           from worker_streams w
           where w.expire_time > now()
             and f.kind = any (w.kinds)
             and (w.all_namespaces or f.namespace_id = any (w.namespaces))
       ) as unserved
from frontier f
group by f.namespace_id, f.kind
