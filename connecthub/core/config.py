"""Settings for every ConnectHub process, read from the environment or `.env`.

Each setting, its variable and its default (documented again in `env.example`):

- DATA_DIR (`./data`): the embedded mode's SQLite file, key file and generated secrets.
- DB_URL (`sqlite:///<DATA_DIR>/connecthub.db`): ConnectHub's database; PostgreSQL via
  `postgresql+psycopg://` in production.
- FERNET_KEY_PATH (`<DATA_DIR>/fernet.key`): the key file that encrypts `secret_cfg`.
- LOG_DIR (unset): when set, logs also go to a rotating file there.
- PREFECT_API_URL (unset): the Prefect server; Prefect reads the same variable.
- PREFECT_UI_URL (PREFECT_API_URL without `/api`): base of the links to flow runs.
- PREFECT_API_AUTH_STRING (unset: the one `connecthub up` generated into
  DATA_DIR/prefect-auth-string, if any): what a client sends to a Prefect server that requires
  authentication (`PREFECT_SERVER_API_AUTH_STRING`); Prefect reads the same variable.
- ADMIN_URL (`http://127.0.0.1:8000`): the admin as operators reach it, for the links back to
  it from the Prefect UI (deployment descriptions, run artifacts).
- CONNECTHUB_WORK_POOL (`connecthub`): the Prefect work pool jobs run in.
- ADMIN_USERNAME (`admin`), ADMIN_PASSWORD (unset: generated once into DATA_DIR).
- SESSION_SECRET (unset: generated once into DATA_DIR).
- CONNECTHUB_WORKER_POLL_SECONDS (`1`): how often a worker asks Prefect for runs.
- CONNECTHUB_SYNC_INTERVAL_SECONDS (`15`): period of the sync and reconcile loop.
- CONNECTHUB_WARM_START (`true`): fork each run's process from the worker's warm fork server;
  `false` starts every run as a fresh `python -m prefect.engine`.
- CONNECTHUB_WORKER_STALE_SECONDS (`90`): a worker silent this long is not online.
- CONNECTHUB_NO_WORKER_ALERT_SECONDS (`300`): alert when no worker has polled for this long.
- CONNECTHUB_LATE_RUN_SECONDS (`300`): alert when a scheduled run has not started this late.
- JOBLOG_RETENTION_DAYS (`30`): JobLog rows, alert deliveries and ConnectHub's Prefect flow
  runs older than this are pruned.
- JOBLOG_MAX_ROWS_PER_JOB (unset: no cap): keep at most this many JobLog rows of each job
  whose own `max_log_rows` is unset.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFECT_AUTH_STRING_FILE = "prefect-auth-string"
# The port of the Prefect server `connecthub up` starts, unless told another.
DEFAULT_PREFECT_PORT = 4200


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=Path("./data"), validation_alias="DATA_DIR")
    db_url: str | None = Field(default=None, validation_alias="DB_URL")
    fernet_key_path: Path | None = Field(default=None, validation_alias="FERNET_KEY_PATH")
    log_dir: Path | None = Field(default=None, validation_alias="LOG_DIR")
    prefect_api_url: str | None = Field(default=None, validation_alias="PREFECT_API_URL")
    prefect_ui_url: str | None = Field(default=None, validation_alias="PREFECT_UI_URL")
    prefect_api_auth_string: SecretStr | None = Field(
        default=None, validation_alias="PREFECT_API_AUTH_STRING"
    )
    admin_url: str = Field(default="http://127.0.0.1:8000", validation_alias="ADMIN_URL")
    work_pool: str = Field(default="connecthub", validation_alias="CONNECTHUB_WORK_POOL")
    admin_username: str = Field(default="admin", validation_alias="ADMIN_USERNAME")
    admin_password: str | None = Field(default=None, validation_alias="ADMIN_PASSWORD")
    session_secret: str | None = Field(default=None, validation_alias="SESSION_SECRET")
    worker_poll_seconds: float = Field(
        default=1.0, validation_alias="CONNECTHUB_WORKER_POLL_SECONDS"
    )
    sync_interval_seconds: float = Field(
        default=15.0, validation_alias="CONNECTHUB_SYNC_INTERVAL_SECONDS"
    )
    warm_start: bool = Field(default=True, validation_alias="CONNECTHUB_WARM_START")
    worker_stale_seconds: float = Field(
        default=90.0, gt=0, validation_alias="CONNECTHUB_WORKER_STALE_SECONDS"
    )
    no_worker_alert_seconds: float = Field(
        default=300.0, gt=0, validation_alias="CONNECTHUB_NO_WORKER_ALERT_SECONDS"
    )
    late_run_seconds: float = Field(
        default=300.0, gt=0, validation_alias="CONNECTHUB_LATE_RUN_SECONDS"
    )
    joblog_retention_days: float = Field(
        default=30.0, gt=0, validation_alias="JOBLOG_RETENTION_DAYS"
    )
    joblog_max_rows_per_job: int | None = Field(
        default=None, ge=1, validation_alias="JOBLOG_MAX_ROWS_PER_JOB"
    )

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'connecthub.db').resolve()}"

    @property
    def key_path(self) -> Path:
        return self.fernet_key_path or self.data_dir / "fernet.key"

    @property
    def prefect_auth_string_path(self) -> Path:
        return self.data_dir / PREFECT_AUTH_STRING_FILE

    @property
    def prefect_auth_string(self) -> str | None:
        """PREFECT_API_AUTH_STRING, else the one generated into DATA_DIR, else None."""
        if self.prefect_api_auth_string is not None:
            return self.prefect_api_auth_string.get_secret_value()
        try:
            return self.prefect_auth_string_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def ui_url(self) -> str | None:
        """Base URL of the Prefect UI, for links to flow runs and deployments."""
        if self.prefect_ui_url:
            return self.prefect_ui_url.rstrip("/")
        if self.prefect_api_url:
            return self.prefect_api_url.rstrip("/").removesuffix("/api")
        return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
