"""The `io.modelcontextprotocol/tasks` extension: tool calls answered with a task handle.

`store.py` holds the task record and the store interface (with the in-memory store),
`runner.py` the interface of where a task's tool runs.
"""
