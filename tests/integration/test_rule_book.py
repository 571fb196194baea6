"""Rules that live in SQL for speed, held equal to the pure rule book
(chronosched_server.transitions) over every case."""

from __future__ import annotations

import itertools

from psycopg import AsyncConnection

from chronosched_server.transitions import dag_state_after

DAG_STATES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]


async def test_the_dag_state_rule_in_sql_is_the_rule_book(aconn: AsyncConnection[tuple[object, ...]]) -> None:
    cases = list(itertools.product(DAG_STATES, [0, 1, 2], [False, True]))
    for state, remaining, failed in cases:
        cur = await aconn.execute(
            b"select chronosched_dag_state(%s::text, %s::bigint, %s::boolean)", (state, remaining, failed)
        )
        row = await cur.fetchone()
        assert row is not None
        assert row[0] == dag_state_after(state, remaining, failed), (state, remaining, failed)
    # The rule does move DAGs (else the comparison proves little).
    assert {dag_state_after(*c) for c in cases} == {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"}
