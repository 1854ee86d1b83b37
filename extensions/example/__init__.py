"""The example integration: a greeting job and the client for a remote greeting service."""

from extensions.example.client import ExampleClient
from extensions.example.job import ExampleJob

__all__ = ["ExampleClient", "ExampleJob"]
