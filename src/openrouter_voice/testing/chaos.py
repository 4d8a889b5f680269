"""A random-fault script for soak tests: each request draws a fault (or health) from a seeded RNG.

Replies are deterministic per conversation, so a test can check that what the user got is exactly
the intended reply: nothing lost, nothing repeated, even across mid-stream failovers.

>>> chaos = ChaosScript(seed=7, fault_rate=0.4)
>>> upstream.script("a/model", chaos)          # doctest: +SKIP
>>> chaos.injected                              # doctest: +SKIP
Counter({'ok': 61, 'http_429': 9, 'hang': 5, ...})
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

from .script import Script

FAULTS = (
    "http_429", "http_500", "http_503", "hang", "keepalive_only", "error_before_text", "error_after_text",
    "stall_after_text", "drop_after_text", "slow_drip",
)


def intended_reply(messages: list[dict[str, Any]]) -> str:
    """The reply a healthy model gives to this conversation (stable across models and retries)."""
    users = [str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = users[-1] if users else ""
    digest = hashlib.sha256(last.encode()).hexdigest()[:6]
    return f"Reply {digest} to turn {len(users)}: you said {last[:40]!r}, and here is a complete answer."


class ChaosScript:
    """A callable script: ``upstream.script(model, ChaosScript(...))``.

    ``fault_rate`` of requests get one of ``faults`` (uniformly); the rest answer healthily with
    voice-like timing (``ttft``, ``tokens_per_second``). Continuation requests (ending in an
    assistant prefill) continue the intended reply from where the prefill stops.
    """

    def __init__(self, *, seed: int = 0, fault_rate: float = 0.3, faults: tuple[str, ...] = FAULTS,
                 ttft: float = 0.02, tokens_per_second: float = 400.0, retry_after: float = 0.2) -> None:
        self.rng = random.Random(seed)
        self.fault_rate = fault_rate
        self.faults = faults
        self.ttft = ttft
        self.tokens_per_second = tokens_per_second
        self.retry_after = retry_after
        self.injected: Counter[str] = Counter()

    def __call__(self, body: dict[str, Any]) -> Script:
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        prefill = ""
        if messages and messages[-1].get("role") == "assistant" and isinstance(messages[-1].get("content"), str):
            prefill = messages[-1]["content"]
            messages = [m for m in messages[:-1] if m.get("role") != "system" or "cut off" not in str(m["content"])]
        full = intended_reply(messages)
        text = full[len(prefill):] if prefill and full.startswith(prefill) else full
        fault = self.rng.choice(self.faults) if self.rng.random() < self.fault_rate else "ok"
        self.injected[fault] += 1
        base: dict[str, Any] = {"text": text, "ttft": self.ttft, "tokens_per_second": self.tokens_per_second}
        words = max(1, len(text.split()) // 2)
        if fault == "http_429":
            return Script(status=429, retry_after=self.retry_after)
        if fault == "http_500":
            return Script(status=500)
        if fault == "http_503":
            return Script(status=503, retry_after=self.retry_after)
        if fault == "hang":
            return Script(hang=True)
        if fault == "keepalive_only":
            return Script(keepalive_only=True, keepalive_interval=0.05)
        if fault == "error_before_text":
            codes: list[int | str] = [502, "502", "server_error"]
            code = self.rng.choice(codes)
            return Script(**base, error_after_tokens=0, error_code=code)
        if fault == "error_after_text":
            return Script(**base, error_after_tokens=words)
        if fault == "stall_after_text":
            return Script(**base, stall_after_tokens=words)
        if fault == "drop_after_text":
            return Script(**base, drop_after_tokens=words)
        if fault == "slow_drip":
            return Script(text=text, ttft=self.ttft, tokens_per_second=40.0)
        return Script(**base)
