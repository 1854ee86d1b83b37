"""Prefect's worker as `connecthub worker` runs it: `python -m deployments.prefect_worker ARGS`
is `prefect worker ARGS`, with the worker's settings turned into environment variables once.

For every run it starts, Prefect 3.9's process worker serializes all of its settings into
environment variables twice (`BaseJobConfiguration._base_environment` and
`EngineCommandStarter.start`, both `get_current_settings().to_environment_variables()`): ~56 ms
of CPU each on a 2-core machine, where the worker's whole share of a run is ~0.25 s. A sampling
profile of the worker while it started 100 runs scheduled for the same minute put 42 % of its
busy time there, and one worker process starts every run, so in such a burst the runs it has
not started yet wait for it.

The result depends only on the settings object. Prefect never changes one in place: new
settings (a profile, `temporary_settings`) are a new object, and the worker keeps the one it
started with for its whole life. So the environment is computed once per settings object and
arguments, here, and each caller gets its own copy of it. Prefect itself would only have to do
the same (or build the run's environment once per run) for this module to go.
"""

from __future__ import annotations

import threading

from prefect.settings.base import PrefectBaseSettings
from prefect.settings.models.root import Settings

# (id of the settings, the arguments) -> (the settings, their environment). The settings are
# held so that their id cannot be reused by another object while the entry exists.
_environments: dict[tuple[int, bool, bool, bool], tuple[Settings, dict[str, str]]] = {}
_lock = threading.Lock()
MAX_ENTRIES = 8


def settings_environment(
    self: Settings,
    exclude_unset: bool = False,
    include_secrets: bool = True,
    include_aliases: bool = False,
) -> dict[str, str]:
    """`Settings.to_environment_variables`, computed once per settings object and arguments."""
    key = (id(self), exclude_unset, include_secrets, include_aliases)
    with _lock:
        entry = _environments.get(key)
    if entry is None or entry[0] is not self:
        environment = PrefectBaseSettings.to_environment_variables(
            self, exclude_unset=exclude_unset, include_secrets=include_secrets,
            include_aliases=include_aliases,
        )
        entry = (self, environment)
        with _lock:
            if len(_environments) >= MAX_ENTRIES:
                _environments.clear()
            _environments[key] = entry
    return dict(entry[1])


def main() -> None:
    Settings.to_environment_variables = settings_environment  # type: ignore[method-assign]
    from prefect.cli import app

    app()


if __name__ == "__main__":
    main()
