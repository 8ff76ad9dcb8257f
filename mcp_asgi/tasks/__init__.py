"""The `io.modelcontextprotocol/tasks` extension: tool calls answered with a task handle.

`store.py` holds the task record and the store interface (with the in-memory store),
`runner.py` the interface of where a task's tool runs, `runtime.py` `run_task` (running one
task anywhere), `inprocess.py` the default runner, and `methods.py` the protocol surface
(task creation on `tools/call`, `tasks/get|update|cancel`, `notifications/tasks`);
`redis_store.py` keeps tasks in Redis for the Redis backend, and `docket.py` is the
job-engine runner (extra `tasks`, pydocket) with its worker process. The
modules are imported by the server, never by `import mcp_asgi.tasks` itself (the backend
imports the store from here).
"""
