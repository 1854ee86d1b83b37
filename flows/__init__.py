"""Prefect flows: the one generic flow that executes any ConnectHub Job."""
