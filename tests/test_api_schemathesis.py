"""`schemathesis run` against a real `connecthub admin` (uvicorn, the API mounted at /api/v1),
with an admin's API token: every operation of the OpenAPI document gets generated valid and
invalid requests, and no answer may be a server error or break the documented schema.

Prefect is unreachable here, as in the other API tests: the two operations that start a run
(`POST /jobs/{job_id}/runs`, `POST /logs/{log_id}/retry`) answer a documented 503 then, which
`not_a_server_error` would count, so they are left out of this run; tests/test_api.py runs them
against a real worker. The same command by hand, against any running admin:

    schemathesis run http://127.0.0.1:8000/api/v1/openapi.json \\
        -H "Authorization: Bearer $TOKEN" \\
        --checks not_a_server_error,response_schema_conformance,content_type_conformance \\
        --exclude-path-regex '/runs$|/retry$' --max-examples 100 --phases examples,coverage,fuzzing
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from connecthub.db import tokens
from connecthub.db.engine import session_scope
from tests.support.admin import TEST_ACTOR, USERNAME
from tests.support.processes import free_port, start_admin, stop_process

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
MAX_EXAMPLES = 100


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    pg_env: None, tmp_path: Path
) -> None:
    env = dict(os.environ)
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
    env.pop("PREFECT_UI_URL", None)
    admin, base_url = start_admin(tmp_path / "admin.log", env)
    try:
        with session_scope() as session:
            _row, token = tokens.create_token(session, USERNAME, actor=TEST_ACTOR)
        result = subprocess.run(
            [SCHEMATHESIS, "run", f"{base_url}/api/v1/openapi.json",
             "-H", f"Authorization: Bearer {token}",
             "--checks", "not_a_server_error,response_schema_conformance,"
             "content_type_conformance",
             "--exclude-path-regex", "/runs$|/retry$",
             "--max-examples", str(MAX_EXAMPLES), "--phases", "examples,coverage,fuzzing",
             "--seed", "14", "--no-color", "--workers", "1", "--request-timeout", "30"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
        )
        summary = result.stdout[-4000:]
        assert result.returncode == 0, summary + result.stderr[-2000:]
        assert re.search(r"\d+ passed", summary), summary
        print(summary)
    finally:
        stop_process(admin)
    log_text = (tmp_path / "admin.log").read_text(errors="replace")
    assert "Traceback" not in log_text, log_text[-3000:]
