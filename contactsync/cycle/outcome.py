"""What one user's cycle ended with: the --json line, the exit code, the demo's story."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from contactsync.model import unpad_user

EXIT_CODES = {"ok": 0, "dry-run": 0, "failed": 1, "guard-stopped": 3, "locked": 4}
#: spec/INTERFACE.md: with several users the exit code is the worst, in this order.
_SEVERITY = (1, 3, 4, 0)


def empty_counts() -> dict[str, dict[str, int]]:
    return {
        "outlook": {"create": 0, "update": 0, "delete": 0},
        "crm": {"create": 0, "update": 0, "unlink": 0, "group_add": 0, "group_remove": 0},
    }


@dataclass
class CycleOutcome:
    user: str
    status: str
    dry_run: bool
    run_id: str = ""
    counts: dict[str, dict[str, int]] = field(default_factory=empty_counts)
    conflicts: int = 0
    quarantined: int = 0
    message: str = ""
    errors: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    conflict_rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)

    def json_line(self) -> dict[str, Any]:
        """Exactly the object of spec/INTERFACE.md's ``--json``."""
        return {
            "user": unpad_user(self.user),
            "status": self.status,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "conflicts": self.conflicts,
            "quarantined": self.quarantined,
            "run_id": self.run_id,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CycleOutcome:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def worst_exit_code(outcomes: Iterable[CycleOutcome]) -> int:
    codes = {o.exit_code for o in outcomes}
    for code in _SEVERITY:
        if code in codes:
            return code
    return 0
