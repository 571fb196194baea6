-- The any-namespace READY index of 0013, (priority desc, due_time, job_id),
-- also serves the order a one-(namespace, kind) claim asks for, with the
-- namespace and kind as filters read from the heap. On a cached generic
-- plan the planner sometimes took it for claim_jobs_in: with 50,000 READY
-- jobs of another namespace due earlier, each claim read past all of them
-- (about 1,550 buffers, 10 to 35 ms against 0.1 to 0.5 ms), and a sustained
-- 16-slot drain ran at 1,100 jobs/s instead of 3,500 (bench.throughput
-- --minutes). Keyed on the negated priority, the index gives claim_jobs_any
-- its order (it sorts by -priority) and nothing else can use it: neither
-- the per-pair claim nor Tick's check for a waiting job ask for -priority.
drop index jobs_ready_any_namespace_idx;
create index jobs_ready_any_namespace_idx on jobs ((-priority), due_time, job_id)
    where state = 'READY';
