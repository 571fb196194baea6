-- One home for the rule that ends a DAG: what a DAG's state becomes once some
-- of its jobs finished. `remaining` is its unfinished job count after them,
-- `failed` whether one of them failed for good. Both statements that count a
-- DAG down (succeed_jobs, for successes; dag_jobs_finished, for the rest)
-- call it. A SQL function of one expression, so the planner inlines it: no
-- per-row call cost. transitions.dag_state_after is its twin in Python, held
-- equal over every case by a test.
create function chronosched_dag_state(state text, remaining bigint, failed boolean) returns text
language sql immutable parallel safe
as $$
    select case
        when state <> 'RUNNING' then state
        when failed then 'FAILED'
        when remaining = 0 then 'SUCCEEDED'
        else state
    end
$$;
