"""chronosched server: gRPC API, PostgreSQL storage, dispatcher and scheduler."""

__version__ = "0.1.0"
