-- The Prefect server keeps its own database on the same PostgreSQL.
CREATE DATABASE prefect OWNER connecthub;
