"""Where a rule must be written twice, a test holds the copies equal."""

from __future__ import annotations

from chronosched_server import validation
from chronosched_server.storage.queries import all_queries
from chronosched_worker import sdk


def test_the_worker_checks_ids_with_the_servers_patterns() -> None:
    # The worker package never imports the server, so it keeps copies to
    # fail fast at start-up; they must accept exactly what the server does.
    assert sdk._WORKER_ID.pattern == validation.KEY_RE.pattern
    assert sdk._KIND.pattern == validation.KIND_RE.pattern
    assert sdk._NAMESPACE.pattern == validation.NAMESPACE_ID_RE.pattern


def test_the_two_claim_queries_share_their_tail_word_for_word() -> None:
    # claim_jobs_in walks (namespace, kind) pairs and claim_jobs_any the
    # global priority index; only their `picked` CTE may differ. Named
    # queries are static text (no SQL is built at run time), so the shared
    # tail is written twice and held equal here.
    queries = all_queries()
    tails = {
        name: queries[name].split("\n)\nupdate jobs j\n", 1)[1]
        for name in ("claim_jobs_in", "claim_jobs_any")
    }
    assert tails["claim_jobs_in"] == tails["claim_jobs_any"]
