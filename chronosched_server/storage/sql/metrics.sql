-- name: frontier_counts
-- READY jobs by namespace and kind for /metrics. The frontier table holds
-- only READY jobs and its claim index leads with (namespace_id, kind), so
-- this is an index scan the size of the runnable work; the collector runs
-- it at most every few seconds.
select namespace_id, kind, count(*)::bigint as jobs
from frontier
group by namespace_id, kind
