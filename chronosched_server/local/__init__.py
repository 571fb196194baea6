"""Local development: everything `chronosched up` runs on one machine.

`up` (the supervisor), `embedded` (PostgreSQL from the pgserver package) and
`envoy` (the repo's Envoy config, rendered and run). The SQL they need lives
in the storage layer (`chronosched_server.storage.bootstrap`).
"""
