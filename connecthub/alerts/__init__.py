"""Alerts: named channels, the messages ConnectHub sends, and their delivery.

- `channels`: alert channels (apprise URLs, Fernet-encrypted at rest, listed masked) and the
  one function that sends through apprise.
- `messages`: what an alert says (job, status, the masked error's first line, links), never a
  secret value.
- `outbox`: the deliveries table, unique on (channel, event key): an event is enqueued once
  per channel however many loops see it, then sent, retried with backoff, or given up.
- `streaks`: which final JobLog rows start a failure streak, continue it or end it.

What needs Prefect to decide (late runs, no worker polling) is evaluated in
`deployments.alerting`, which enqueues here too.
"""

from connecthub.alerts.channels import ChannelError, add_channel, delete_channel, send
from connecthub.alerts.messages import AlertEvent, AlertKind
from connecthub.alerts.outbox import DeliveryStatus, deliver_due, enqueue

__all__ = [
    "AlertEvent",
    "AlertKind",
    "ChannelError",
    "DeliveryStatus",
    "add_channel",
    "delete_channel",
    "deliver_due",
    "enqueue",
    "send",
]
