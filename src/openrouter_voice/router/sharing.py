"""The narrow interface between a :class:`~.health.HealthTracker` and a store that shares its verdicts.

The router never talks to a store itself (no Redis, no sockets here): the tracker keeps the local
copy every turn reads, tells its :class:`HealthSink` about each transition (a call that must return
at once: the sink queues the work), and takes the fleet's view back through
:meth:`~.health.HealthTracker.apply_shared`. Without a sink the tracker is the in-process store it
always was (``chat``, ``talk``, library users).

A half-open trial is one request *fleet-wide*: while the sink is online, a half-open model is
available only to the process holding the trial lease, which the sink claims in the background
when asked (:meth:`HealthSink.trial_wanted`) and grants with
:meth:`~.health.HealthTracker.grant_trial`. While it is offline, the tracker decides alone.

>>> state = SharedState(failures=1, open_until=130.0, failed_at=100.0, reason="429", told_until=130.0,
...                     version=7)
>>> state.failures, state.tool_less
(1, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SharedState:
    """One model's circuit as the fleet agrees on it (wall-clock seconds; ``version`` grows per transition)."""

    failures: int = 0
    open_until: float = 0.0
    failed_at: float = 0.0
    reason: str | None = None
    told_until: float = 0.0
    successes: int = 0
    total_failures: int = 0
    tool_less: bool = False
    version: int = 0


class HealthSink(Protocol):
    """Where a tracker reports transitions. Every method returns at once (the work is queued)."""

    @property
    def online(self) -> bool:
        """True while the store answers: then it arbitrates half-open trials."""

    def failed(self, model: str, *, reason: str, retry_after: float | None, exclude: bool, at: float) -> None:
        """A failure verdict taken at ``at`` (wall clock)."""

    def succeeded(self, model: str, *, sent: float | None, at: float) -> None:
        """A reply to a request sent at ``sent`` (None: untracked) came back at ``at``."""

    def trial_wanted(self, model: str) -> None:
        """``model`` is half-open here and this process holds no trial lease: try to claim it."""

    def trial_started(self, model: str) -> None:
        """The trial lease is being used: keep it for the length of a request."""

    def trial_ended(self, model: str) -> None:
        """The trial ended without a verdict (cancelled): release the lease."""

    def suspected(self, model: str, *, reason: str, until: float, since: float) -> None:
        """A hedge beat ``model``'s request sent at ``since`` while it gave no first token: every process
        should try it after the others until it is judged (or a later request speaks), or ``until`` (wall
        clock) at the latest."""

    def unsuspected(self, model: str) -> None:
        """``model`` answered after all (the silent request, or one sent after it): the suspicion is over."""

    def tool_less(self, model: str) -> None:
        """``model`` refused tools: every process should send it turns without them."""

    def reply(self, model: str, *, ttft: float | None, gaps: list[float], cost: float | None,
              sentence: float | None = None) -> None:
        """A healthy reply's timings (seconds: ``sentence`` from its first token to the end of its first
        speakable sentence, in spoken replies) and cost (credits), for latency learning and the view."""
