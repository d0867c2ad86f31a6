"""When probe results open and resolve an incident: consecutive failures and successes.

An incident's downtime starts at the first failure of the streak that opened it (the app was
already failing before the threshold was reached) and ends at the first success of the streak
that resolved it. Flapping is damped by requiring ``successes_to_resolve`` successes in a row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

HealthStatus = Literal["unknown", "up", "down"]


@dataclass
class HealthTracker:
    """The probe state of one application, updated by each result."""

    status: HealthStatus = "unknown"
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    failing_since: dt.datetime | None = None
    recovering_since: dt.datetime | None = None


@dataclass(frozen=True)
class Transition:
    """An incident to open (``began_at`` = first failure) or to resolve (``ended_at`` = first success)."""

    kind: Literal["open", "resolve"]
    at: dt.datetime


def observe(
    tracker: HealthTracker,
    *,
    ok: bool,
    at: dt.datetime,
    failures_to_open: int,
    successes_to_resolve: int,
) -> Transition | None:
    """Apply one probe result to ``tracker`` and return the incident transition it causes, if any."""
    if ok:
        tracker.consecutive_failures = 0
        tracker.failing_since = None
        if tracker.consecutive_successes == 0:
            tracker.recovering_since = at
        tracker.consecutive_successes += 1
        if tracker.status == "down" and tracker.consecutive_successes >= successes_to_resolve:
            tracker.status = "up"
            return Transition("resolve", tracker.recovering_since or at)
        if tracker.status == "unknown":
            tracker.status = "up"
        return None

    tracker.consecutive_successes = 0
    tracker.recovering_since = None
    if tracker.consecutive_failures == 0:
        tracker.failing_since = at
    tracker.consecutive_failures += 1
    if tracker.status != "down" and tracker.consecutive_failures >= failures_to_open:
        tracker.status = "down"
        return Transition("open", tracker.failing_since or at)
    return None
