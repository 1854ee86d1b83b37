"""The automation that marks a flow run CRASHED when its heartbeats stop.

When the worker and the flow process die together nothing is left to report the run, and
Prefect keeps it RUNNING forever. ConnectHub's workers make every flow run send a heartbeat
every HEARTBEAT_SECONDS; this automation, installed once per Prefect server, moves a run to
CRASHED when no heartbeat nor terminal event follows its Running state or its last heartbeat
within HEARTBEAT_GRACE_SECONDS. Running counts as a start because the server emits that event
itself: a process killed before its first heartbeat left the process is crashed too. The
reconciler then mirrors the CRASHED state into JobLog.
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
            after={"prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
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
    """Install the automation, or bring an older one up to date; returns the writes (0 or 1)."""
    wanted = heartbeat_automation()
    installed = client.read_automations_by_name(AUTOMATION_NAME)
    if not installed:
        client.create_automation(wanted)
        return 1
    current = installed[0]
    if (current.trigger, current.actions, current.enabled) == (
        wanted.trigger, wanted.actions, wanted.enabled
    ):
        return 0
    client.update_automation(current.id, wanted)
    return 1
