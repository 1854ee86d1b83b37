"""ConnectHub's database: engine and sessions, models, queries, Alembic migrations."""
