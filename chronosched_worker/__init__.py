"""chronosched worker process and Python SDK (the streaming worker lands with the worker issue)."""
