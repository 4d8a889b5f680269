"""Fleet-wide model health in Redis or Valkey: the :class:`~openrouter_voice.router.sharing.HealthSink`
that every router built from settings uses when ``OPENROUTER_VOICE_REDIS_URL`` is set.

The tracker's calls only queue work; a writer task runs one Lua script per transition
(:mod:`.scripts`) and applies the fleet's answer to the local copy; a listener applies what other
processes publish (a circuit opened anywhere is respected here within milliseconds); a poller reads
everything every :data:`POLL_INTERVAL` seconds as the backstop for missed messages and to learn the
fleet's latency samples. Fail open: turns go on with the local copy, one warning per outage; the store
reconnects, replays the verdicts taken meanwhile (or re-seeds a Redis that lost them) and resynchronises.

>>> RedisHealthStore("redis://127.0.0.1:6379/0").attach(HealthTracker())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ..redact import redact
from ..router.health import HealthTracker
from ..router.latency import GAP_SAMPLES, TTFT_SAMPLES
from ..router.sharing import SharedState
from . import scripts, suspects
from .messages import MessageError, parse_fields, parse_state
from .reading import epoch, keep_samples, members, read_models
from .urls import masked

logger = logging.getLogger("openrouter_voice.fleet")

POLL_INTERVAL = 0.25
"""Seconds between backstop reads (and reconnection attempts while Redis is away)."""
SOCKET_TIMEOUT = 0.5
CLAIM_TTL = 5.0
"""Seconds a claimed but unused half-open trial stays locked in Redis; this process uses it for half
that time only, so its trial reaches Redis (which extends the lock) well before anyone else may claim."""
TRIAL_TTL = 15.0
"""Seconds a running trial keeps its lock: a crashed holder blocks the model no longer than this."""
REPLAY_LIMIT = 512
SAMPLE_FLUSH = 0.5
"""Seconds latency samples and costs are gathered before one write per model (not one per reply)."""

_Op = Callable[[aioredis.Redis], Awaitable[Any]]


class RedisHealthStore:
    """Shares one :class:`HealthTracker`'s verdicts with every process using the same Redis and prefix."""

    def __init__(self, url: str, *, prefix: str = "openrouter-voice", poll_interval: float = POLL_INTERVAL) -> None:
        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}:events"
        self.poll_interval = poll_interval
        self.tracker: HealthTracker | None = None
        self._token = uuid.uuid4().hex
        self._online = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[tuple[_Op, str | None]] | None = None  # (operation, model it transitions)
        self._replay: deque[_Op] = deque(maxlen=REPLAY_LIMIT)  # transitions taken while Redis was away
        self._claiming: set[str] = set()
        self._applied: dict[str, int] = {}  # model -> version applied to the local copy
        self._pending: dict[str, int] = {}  # model -> our transitions not yet answered
        self._newest: dict[str, SharedState] = {}  # model -> newest fleet state seen
        self._run_id: str | None = None
        self._warned: set[str] = set()
        self._synced: asyncio.Event | None = None
        self._subscribed: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None  # set at each change applied to the local copy
        self._closed = False
        self._scripts: dict[str, Any] = {}
        self._samples: dict[str, scripts.Samples] = {}
        self._flush_timer: asyncio.TimerHandle | None = None

    def attach(self, tracker: HealthTracker) -> None:
        """Share ``tracker``; starts at once if an event loop runs, else at the tracker's first verdict."""
        self.tracker = tracker
        tracker.attach(self)
        self._ensure_started()

    @property
    def online(self) -> bool:
        return self._online and not self._closed

    def _ensure_started(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._closed:
            return False
        if self._loop is loop:
            return True
        # First use, or a new event loop (the old one is gone with its connections): start afresh.
        self._loop, self._online, self._applied, self._pending, self._newest = loop, False, {}, {}, {}
        self._run_id, self._claiming, self._samples, self._flush_timer = None, set(), {}, None
        self._replay.clear()
        self._client = aioredis.Redis.from_url(
            self.url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._scripts = {name: self._client.register_script(getattr(scripts, name))
                         for name in ("FAILURE", "SUCCESS", "CLAIM", "LEASE", "TOOL_LESS", "REPLY", "MERGE")}
        self._scripts["SUSPECT"] = self._client.register_script(suspects.SCRIPT)
        self._queue = asyncio.Queue()
        self._synced = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks = [loop.create_task(coro, name=f"fleet-health-{name}") for name, coro in
                       (("writer", self._writer()), ("listener", self._listener()), ("poller", self._poller()))]
        return True

    async def wait_synced(self, limit: float) -> bool:
        """Wait until the store listens to the channel and applied a full read (True), or ``limit`` seconds."""
        if not self._ensure_started() or self._synced is None or self._subscribed is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._subscribed.wait()
                await self._synced.wait()
        return self._synced.is_set() and self._subscribed.is_set()

    async def wait_for(self, condition: Callable[[], bool], limit: float) -> bool:
        """Wait until ``condition()`` holds, checked at each change to the local copy and each poll."""
        if not self._ensure_started() or self._changed is None:
            return condition()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        return condition()

    async def flush(self, limit: float) -> bool:
        """Wait until everything queued before this call has reached Redis (True), or ``limit`` seconds."""
        if self._flush_timer is not None:  # samples gathered so far go first
            self._flush_timer.cancel()
            self._flush_samples()
        done = asyncio.Event()

        async def mark(client: aioredis.Redis) -> None:
            done.set()

        self._submit(mark)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await done.wait()
        return done.is_set()

    async def aclose(self) -> None:
        """Stop the background tasks and close the connections (idempotent)."""
        self._closed = True
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        tasks, self._tasks = self._tasks, []
        # Cancelled again until done: on Python 3.11 a cancellation that meets a timeout expiring inside
        # redis-py can be swallowed (each loop also ends by itself once closed).
        while pending := [task for task in tasks if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=SOCKET_TIMEOUT)
        if self._client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(SOCKET_TIMEOUT):
                    await self._client.aclose()
            self._client = None
        if self.tracker is not None and self.tracker.sink is self:
            self.tracker.attach(None)

    def key(self, kind: str, model: str = "") -> str:
        return f"{self.prefix}:{kind}:{model}" if model else f"{self.prefix}:{kind}"

    def _submit(self, op: _Op, *, model: str | None = None) -> None:
        """Queue ``op``; ``model``: it is a transition of that model, whose answer is a state to apply."""
        if not self._ensure_started() or self._queue is None:
            return
        if model is not None:
            self._pending[model] = self._pending.get(model, 0) + 1
        self._queue.put_nowait((op, model))

    def failed(self, model: str, *, reason: str, retry_after: float | None, exclude: bool, at: float) -> None:
        tracker = self.tracker
        assert tracker is not None
        args = [model, repr(at), redact(reason)[:200], "" if retry_after is None else repr(float(retry_after)),
                "1" if exclude else "0", repr(tracker.base_cooldown), repr(tracker.max_cooldown),
                repr(tracker.exclude_cooldown), self.channel]
        keys = [self.key("m", model), self.key("models"), self.key("trial", model), self.key("recent", model)]
        self._submit(self._transition("FAILURE", model, keys, args), model=model)

    def succeeded(self, model: str, *, sent: float | None, at: float) -> None:
        args = [model, "" if sent is None else repr(sent), self.channel]
        keys = [self.key("m", model), self.key("models"), self.key("trial", model)]
        self._submit(self._transition("SUCCESS", model, keys, args), model=model)

    def tool_less(self, model: str) -> None:
        keys = [self.key("m", model), self.key("models")]
        self._submit(self._transition("TOOL_LESS", model, keys, [model, self.channel]), model=model)

    def suspected(self, model: str, *, reason: str, until: float, since: float) -> None:
        args = suspects.script_args(model, redact(reason), until, since, now=time.time(), channel=self.channel)
        self._submit(self._transition("SUSPECT", model, [self.key("suspect", model)], args))

    def unsuspected(self, model: str) -> None:
        self.suspected(model, reason="", until=0.0, since=0.0)

    def trial_wanted(self, model: str) -> None:
        if model in self._claiming:
            return
        self._claiming.add(model)
        self._submit(self._claim(model))

    def trial_started(self, model: str) -> None:
        self._submit(self._lease(model, TRIAL_TTL))

    def trial_ended(self, model: str) -> None:
        self._submit(self._lease(model, 0.0))

    def reply(self, model: str, *, ttft: float | None, gaps: list[float], cost: float | None,
              sentence: float | None = None) -> None:
        # Gathered and written once per SAMPLE_FLUSH per model: a healthy turn costs Redis nothing at once.
        if not self._ensure_started() or self._loop is None:
            return
        ttfts, gap_list, total, sentences = self._samples.get(model, ([], [], 0.0, []))
        ttfts.extend([ttft] if ttft is not None else [])
        sentences.extend([sentence] if sentence is not None else [])
        self._samples[model] = (ttfts[-TTFT_SAMPLES:], (gap_list + gaps)[-GAP_SAMPLES:], total + (cost or 0.0),
                                sentences[-TTFT_SAMPLES:])
        if self._flush_timer is None:
            self._flush_timer = self._loop.call_later(SAMPLE_FLUSH, self._flush_samples)

    def _flush_samples(self) -> None:
        self._flush_timer = None
        samples, self._samples = self._samples, {}
        for model, gathered in samples.items():
            self._submit(self._write_samples(model, gathered))

    def _write_samples(self, model: str, gathered: scripts.Samples) -> _Op:
        keys = [self.key("m", model), self.key("models"), *(self.key(k, model) for k in ("ttft", "gap", "sentence"))]
        args = scripts.reply_args(model, gathered)

        async def op(client: aioredis.Redis) -> None:
            if await self._scripts["REPLY"](keys=keys, args=args, client=client):
                self._warn_once("healed", "a Redis key of %s under %r had the wrong type; replaced", model, self.prefix)

        return op

    def _transition(self, script: str, model: str, keys: list[str], args: list[str]) -> _Op:
        async def op(client: aioredis.Redis) -> Any:
            return await self._scripts[script](keys=keys, args=args, client=client)
        return op

    def _claim(self, model: str) -> _Op:
        async def op(client: aioredis.Redis) -> None:
            try:
                now = time.time()
                keys = [self.key("m", model), self.key("models"), self.key("trial", model)]
                won = await self._scripts["CLAIM"](keys=keys, args=[self._token, repr(now), str(int(CLAIM_TTL * 1000))],
                                                   client=client)
                if won == 1 and self.tracker is not None:
                    self.tracker.grant_trial(model, now + CLAIM_TTL / 2)
                    if self._changed is not None:
                        self._changed.set()
            finally:
                self._claiming.discard(model)
        return op

    def _lease(self, model: str, ttl: float) -> _Op:
        async def op(client: aioredis.Redis) -> None:
            await self._scripts["LEASE"](keys=[self.key("trial", model)],
                                         args=[self._token, str(int(ttl * 1000))], client=client)
        return op

    def _take(self, raw: Any, *, source: str) -> None:
        """Apply a state published or returned by a script (JSON text), if it is news."""
        try:
            if (mark := suspects.parse_suspect(raw, now=time.time())) is not None:
                return suspects.apply(self.tracker, mark)
            model, state, healed = parse_state(raw)
        except MessageError as exc:
            self._warn_once(f"garbage-{source}", "ignored a malformed health message from Redis (%s): %s; "
                            "check that nothing else writes to %r", source, exc, self.channel)
            return
        if healed:
            self._warn_once("healed", "a Redis key of %s under %r had the wrong type; replaced", model, self.prefix)
        self._offer(model, state)

    def _offer(self, model: str, state: SharedState) -> None:
        newest = self._newest.get(model)
        if newest is None or state.version > newest.version:
            self._newest[model] = newest = state
        # While our own transitions are on their way, an older fleet view must not undo them locally.
        if self._pending.get(model, 0) == 0 and newest.version > self._applied.get(model, -1):
            self._applied[model] = newest.version
            if self.tracker is not None:
                self.tracker.apply_shared(model, newest)
        if self._changed is not None:
            self._changed.set()

    async def _writer(self) -> None:
        assert self._queue is not None
        while not self._closed:
            op, model = await self._queue.get()
            client = self._client
            if client is None or not self._online:
                self._settle(model, op)
                continue
            try:
                raw = await op(client)
            except (RedisError, OSError, TimeoutError) as exc:
                self._settle(model, op)
                self._offline(exc)
            except Exception as exc:  # a bug or garbage reply must not stop sharing for good
                self._settle(model, None)
                self._warn_once("writer", "fleet health: unexpected %s: %s", type(exc).__name__, exc)
            else:
                self._settle(model, None)
                if model is not None:
                    self._take(raw, source="script")

    def _settle(self, model: str | None, unsent: _Op | None) -> None:
        """One queued operation is done with; a transition Redis did not get is kept for the replay."""
        if model is None:
            if unsent is not None:  # a claim never sent must not block the next one
                self._claiming.clear()
            return
        self._pending[model] = max(0, self._pending.get(model, 0) - 1)
        if unsent is not None:
            self._replay.append(unsent)

    async def _listener(self) -> None:
        while not self._closed:
            client = self._client
            if client is None or not self._online:
                await asyncio.sleep(self.poll_interval)
                continue
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Redis confirms the subscription: from here no message can be missed.
                for _ in range(20):
                    if await pubsub.get_message(timeout=SOCKET_TIMEOUT) is not None:
                        break
                if self._subscribed is not None:
                    self._subscribed.set()
                while not self._closed:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._take(message.get("data"), source="channel")
            except (RedisError, OSError, TimeoutError) as exc:
                self._offline(exc)
                if self._subscribed is not None:
                    self._subscribed.clear()
            finally:
                with contextlib.suppress(Exception):  # bounded: closing must not wait on a dead server
                    async with asyncio.timeout(SOCKET_TIMEOUT):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _poller(self) -> None:
        rounds = 0
        while not self._closed:
            try:
                await self._poll(latency=rounds % 4 == 0)
                rounds += 1
            except (RedisError, OSError, TimeoutError) as exc:
                self._offline(exc)
            except Exception as exc:  # garbage in Redis (e.g. a hostile value): keep going on local health
                self._warn_once("poll", "fleet health: could not read the shared state (%s: %s)",
                                type(exc).__name__, exc)
            await asyncio.sleep(self.poll_interval)

    async def _poll(self, *, latency: bool) -> None:
        client = self._client
        if client is None:
            return
        run_id = await epoch(client, self.key("epoch"))
        if not self._online:
            await self._back_online(client, restarted=run_id != self._run_id)
        self._run_id = run_id
        models = await members(client, self.key("models"))
        await self._read(client, models, latency=latency)
        if self._synced is not None:
            self._synced.set()
        if self._changed is not None:
            self._changed.set()

    async def _back_online(self, client: aioredis.Redis, *, restarted: bool) -> None:
        """Reconnected: replay the verdicts taken meanwhile, or re-seed a Redis that lost them."""
        first = self._run_id is None
        self._applied.clear()
        self._online = True
        if not first:
            logger.warning("fleet health: Redis at %s is back; sharing again", masked(self.url))
        self._warned.discard("outage")
        replay, self._replay = list(self._replay), deque(maxlen=REPLAY_LIMIT)
        if restarted and not first and self.tracker is not None:
            for model in self.tracker.models():  # Redis lost everything: our copy re-seeds it
                view = self.tracker.shared_view(model)
                if view.failures or view.tool_less:
                    self._take(await self._scripts["MERGE"](keys=[self.key("m", model), self.key("models")],
                                                            args=scripts.merge_args(model, self.channel, view),
                                                            client=client), source="script")
        else:
            for op in replay:
                self._take(await op(client), source="script")

    async def _read(self, client: aioredis.Redis, models: list[str], *, latency: bool) -> None:
        for model, fields, mark, ttft, gap, sentence in await read_models(client, self.key, models, latency=latency):
            if isinstance(fields, Exception):
                self._warn_once("healed", "fleet health: %s under %r is not a hash (%s); it is replaced at the "
                                "next verdict", model, self.prefix, fields)
                continue
            try:
                suspects.apply_stored(self.tracker, model, mark, now=time.time())
            except MessageError as exc:  # apart: a garbage mark must not hide the model's circuit
                self._warn_once("garbage-key", "fleet health: ignored a malformed suspect mark of %s: %s", model, exc)
            try:
                state = parse_fields(fields)
            except MessageError as exc:
                self._warn_once("garbage-key", "fleet health: ignored a malformed state of %s: %s", model, exc)
                continue
            self._offer(model, state)
            if self.tracker is not None:
                keep_samples(self.tracker.latency(model), ttft, gap, sentence)

    def _offline(self, exc: BaseException) -> None:
        # once per outage: the warning is re-armed when Redis is back
        self._warn_once("outage", "fleet health: Redis at %s unreachable (%s); using this process's health "
                        "until it is back", masked(self.url), type(exc).__name__)
        self._online = False
        self._claiming.clear()

    def _warn_once(self, kind: str, message: str, *args: Any) -> None:
        if kind in self._warned:
            logger.debug(message, *args)
            return
        self._warned.add(kind)
        logger.warning(message, *args)
