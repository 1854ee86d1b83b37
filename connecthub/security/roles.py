"""The three roles and their order: what each may do is a superset of the role below it.

- viewer: reads jobs, job logs and alert deliveries;
- operator: also runs jobs now, retries executions, enables and disables jobs;
- admin: also creates, edits and deletes jobs and alert channels, manages users and API tokens,
  and reads the audit trail.

Every entry point asks `role.allows(required)`; which role an action requires is said once per
entry point, next to its routes (the admin's `permissions`, the API's route dependencies).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return ROLE_ORDER.index(self)

    def allows(self, required: Role) -> bool:
        """Whether this role may do what `required` may."""
        return self.rank >= required.rank

    @classmethod
    def parse(cls, value: str) -> Role:
        """The role named `value`; ValueError listing the roles otherwise."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ValueError(
                f"unknown role '{value}': use one of {', '.join(role.value for role in cls)}"
            ) from None


ROLE_ORDER: tuple[Role, ...] = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
