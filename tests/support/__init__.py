"""Helpers shared by the test folders. Import them from their modules:

- `waiting`: polls with a deadline (`poll`, `eventually`, `wait_until`), never
  a fixed sleep, and bounded checks that something does NOT happen for a
  while (`stays`, `stays_blocking`).
- `processes`: free ports, a clean environment for child processes, pid
  checks, the `chronosched_server server` command line.
- `grpc_helpers`: protobuf builders (`struct`, `seconds`), gRPC health
  (`health_status`, `wait_serving`) and `RawWorker`, a bare Dequeue stream.
- `server`: the in-process server (`serving`, `Stubs`) and its `api` and
  `api_without_scheduler` fixtures (conftest.py files import these).
- `builders`: namespace, definition and DAG builders and `fails`, over `Stubs`.
- `worker`: for SDK Worker tests: `Gates`, `running`, `make_ctx`, `read_pid`.
- `rest`: the end-to-end tests' REST calls and checks (through Envoy).
- `up`: `chronosched up` as a real process (`UpProcess`, `session_up`), for
  the end-to-end tests and the REST fuzzer (tests/fuzz/).
- `tls`: a throw-away PKI made at run time (`make_pki`: CAs, server and
  client certificates as PEM files), for the TLS tests.

What only one folder needs stays there: tests/faults/ keeps the fault
harness (helpers.py: processes and database reads; invariants.py,
infra_proxy.py, worker_proc.py, infra_worker.py, exec_job.py) and
tests/worker/ its scripted peer (fake_server.py).
"""
