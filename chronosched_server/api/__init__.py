"""gRPC servicers: validate -> call storage -> convert. No SQL, no status codes."""
