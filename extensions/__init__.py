"""Job plugins shipped with ConnectHub.

Each subpackage is one integration: a `client.py` with its `BaseClient` subclass (HTTP, retries,
credentials) and a `job.py` with its `BaseJob` subclass (what the job does). Handler paths look
like `extensions.example.job:ExampleJob`.
"""
