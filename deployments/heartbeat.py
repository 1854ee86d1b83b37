"""The automation that marks a flow run CRASHED when its heartbeats stop.

When the worker and the flow process die together nothing is left to report the run, and
Prefect keeps it RUNNING forever. ConnectHub's workers make every flow run send a heartbeat
every HEARTBEAT_SECONDS; this automation, installed once per Prefect server, moves a run of the
ConnectHub flow to CRASHED when no heartbeat nor terminal event follows a heartbeat within
HEARTBEAT_GRACE_SECONDS. The reconciler then mirrors the CRASHED state into JobLog.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

AUTOMATION_NAME = "connecthub: crash flow runs whose heartbeat stopped"
HEARTBEAT_SECONDS = 30
HEARTBEAT_GRACE_SECONDS = 90
FLOW_RUN_EVENTS = {
    "prefect.flow-run.heartbeat",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
}


def heartbeat_automation() -> AutomationCore:
    return AutomationCore(
        name=AUTOMATION_NAME,
        description="Installed by ConnectHub: a run whose worker and process died together.",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect=FLOW_RUN_EVENTS,
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=HEARTBEAT_GRACE_SECONDS),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {HEARTBEAT_GRACE_SECONDS} s: worker and flow "
                "process are gone",
            )
        ],
    )


def ensure_heartbeat_automation(client: SyncPrefectClient) -> int:
    """Install the automation if it is missing; returns the number of writes (0 or 1)."""
    if client.read_automations_by_name(AUTOMATION_NAME):
        return 0
    client.create_automation(heartbeat_automation())
    return 1
