"""ConnectHub: integration jobs as plugins, run by Prefect 3, operated from SQLAdmin."""

__version__ = "0.1.0"
