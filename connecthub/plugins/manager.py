"""The one place that loads job plugins.

`load_job_class("extensions.example.job:ExampleJob")` imports the module and returns the class,
or raises a `PluginError` subclass that says exactly what is wrong: a malformed path, a module
that does not import (and why), a missing attribute, or something that is not a BaseJob.
`available_plugins()` lists the BaseJob classes in the `extensions` package and in the
`connecthub.jobs` entry-point group, for the admin's handler picker and `connecthub plugins`.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from importlib.metadata import entry_points

from connecthub.jobs.base import BaseJob

ENTRY_POINT_GROUP = "connecthub.jobs"
HANDLER_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


class PluginError(ValueError):
    """A handler path that cannot be used as a job."""


class HandlerPathFormatError(PluginError):
    pass


class PluginImportError(PluginError):
    pass


class PluginNotFoundError(PluginError):
    pass


class NotAJobError(PluginError):
    pass


def load_job_class(handler_path: str) -> type[BaseJob]:
    """The BaseJob subclass named by `handler_path` (`package.module:ClassName`)."""
    path = (handler_path or "").strip()
    if not HANDLER_PATH.match(path):
        raise HandlerPathFormatError(
            f"'{handler_path}' is not a handler path: use module:Class, "
            "e.g. extensions.example.job:ExampleJob"
        )
    module_name, class_name = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing == module_name or module_name.startswith(f"{missing}."):
            raise PluginImportError(f"module '{module_name}' was not found") from None
        raise PluginImportError(
            f"module '{module_name}' failed to import: it needs '{error.name}', which is missing"
        ) from None
    except Exception as error:
        raise PluginImportError(
            f"module '{module_name}' failed to import: {type(error).__name__}: {error}"
        ) from None
    try:
        candidate = getattr(module, class_name)
    except AttributeError:
        raise PluginNotFoundError(
            f"module '{module_name}' has no attribute '{class_name}'"
        ) from None
    if not (inspect.isclass(candidate) and issubclass(candidate, BaseJob)):
        raise NotAJobError(f"'{path}' is not a subclass of connecthub.jobs.BaseJob")
    if candidate is BaseJob or inspect.isabstract(candidate):
        raise NotAJobError(f"'{path}' is the abstract base, not a job")
    return candidate


def _jobs_in_module(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except Exception:  # a broken plugin must not hide the others from the list
        return []
    return [
        f"{module_name}:{name}"
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseJob)
        and obj is not BaseJob
        and obj.__module__ == module_name
    ]


def available_plugins() -> list[str]:
    """Handler paths of every job found under `extensions` and in the entry-point group."""
    found: set[str] = set()
    try:
        extensions = importlib.import_module("extensions")
    except ImportError:
        extensions = None
    if extensions is not None:
        for info in pkgutil.walk_packages(extensions.__path__, prefix="extensions."):
            if not info.ispkg:
                found.update(_jobs_in_module(info.name))
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.add(entry.value)
    return sorted(found)
