-- Two partial indexes hold the READY jobs: jobs_ready_idx for the claims of
-- one (namespace, kind) and Tick's check for a waiting job, and the
-- any-namespace walk's jobs_ready_any_namespace_idx. Both said
-- `where state = 'READY'`, so every statement asking for READY jobs could
-- read either. Which one it read was the planner's guess, and after a quiet
-- spell the guess is blind: an ANALYZE that finds no READY row records both
-- indexes as empty, and PostgreSQL then keeps estimating each from that
-- density (zero rows per page) however many jobs arrive, until the next
-- ANALYZE. Both look free to read whole. On such statistics, with 20,000
-- jobs READY, the walk read all of jobs_ready_idx and sorted it (25 ms a
-- claim of 16, against 1.5 ms through its own index), and a per-pair claim
-- read all of the walk's index in one of bench.peers' drains (14 to 34 ms).
--
-- So the walk's index gets a predicate that means the same, READY, but that
-- `state = 'READY'` does not prove: `state like 'READY'` (a pattern with no
-- wildcard). Only claim_jobs_any spells it that way, and it no longer says
-- `state = 'READY'`, which would let it read jobs_ready_idx. Each statement
-- can then read just its own READY index, whatever the statistics say.
drop index jobs_ready_any_namespace_idx;
create index jobs_ready_any_namespace_idx on jobs ((-priority), due_time, job_id)
    where state like 'READY';
