"""What the REST fuzzer ran, counted as it runs and printed when the session
ends (conftest.py): the closing line quotes operations and cases."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Operations, cases by generation mode and phase, answers by status."""

    operations: set[str] = field(default_factory=set)
    modes: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    # 4xx answers whose database snapshot was compared before and after.
    refusals_checked: int = 0

    @property
    def cases(self) -> int:
        return sum(self.modes.values())

    def summary(self) -> str:
        def counts(counter: Counter[str] | Counter[int]) -> str:
            return ", ".join(f"{key}: {n}" for key, n in sorted(counter.items()))

        return (
            f"schemathesis: {len(self.operations)} operations, {self.cases} cases "
            f"(modes {counts(self.modes)}; phases {counts(self.phases)}); "
            f"statuses {counts(self.statuses)}; "
            f"{self.refusals_checked} refusals checked for state changes"
        )


TALLY = Tally()
