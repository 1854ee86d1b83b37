"""Helpers shared by the test suite and the benchmarks (bench/), each written once, by topic.

No fixtures here: they are in tests/conftest.py and tests/engine.py, and test modules import
neither those nor each other, only these modules:

- `pg`: the PostgreSQL server of the tests (CONNECTHUB_TEST_PG), database URLs, create/drop;
- `settings`: `use_settings`, pointing ConnectHub at an environment;
- `logs`: `captured_loggers`, records of loggers that do not propagate;
- `processes`: free ports, waiting for HTTP, stopping process groups, starting the Prefect
  server, a `connecthub worker` and the admin, finding our processes by their environment;
- `http`: `ScriptedServer`, a local HTTP server that answers scripted `Reply`s;
- `cli`: `Cli`, the `connecthub` command in a child process on a SQLite data dir, and checks of
  its results;
- `admin`: the admin over HTTP in-process: credentials, `RecordingClient`, the job form and
  page helpers;
- `jobs`: jobs and their runs on the session's database and Prefect (save, read back, look for
  the canary in Prefect).

This file imports none of them, so that importing one pulls in only what it needs. pytest
rewrites their asserts as it does a test module's (see tests/__init__.py).
"""
