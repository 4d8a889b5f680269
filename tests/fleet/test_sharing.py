"""Two stores in one process stand for two processes: one verdict, both copies (real Redis)."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from openrouter_voice.router import CircuitState

LIMIT = 5.0  # bound on any wait for the fleet; propagation itself is measured in the benchmark


async def synced(*stores) -> None:  # type: ignore[no-untyped-def]
    for store in stores:
        assert await store.wait_synced(LIMIT), "store never read Redis"


async def test_a_retry_after_seen_by_one_process_is_respected_by_the_other(make_store):
    a, b = make_store(), make_store()
    await synced(a, b)
    a.tracker.record_failure("p/primary", reason="429 rate limited", retry_after=30)
    assert await b.wait_for(lambda: not b.tracker.is_available("p/primary"), LIMIT), "B never saw A's 429"
    assert b.tracker.told_to_wait("p/primary")
    assert 28 < b.tracker.wait_remaining("p/primary") <= 30
    assert b.tracker.reason("p/primary") == "429 rate limited"


async def test_consecutive_failures_add_up_across_processes_and_a_success_after_them_closes(make_store):
    a, b = make_store(), make_store()
    await synced(a, b)
    a.tracker.record_failure("m", reason="500")
    assert await b.wait_for(lambda: b.tracker.state("m") is CircuitState.OPEN, LIMIT)
    sent = b.tracker.now()
    b.tracker.record_failure("m", reason="502")
    assert await a.wait_for(lambda: a.tracker.shared_view("m").failures == 2, LIMIT), "failures not added up"
    assert a.tracker.cooldown_remaining("m") > 5  # the fleet's second failure: backoff doubled (10 s)
    a.tracker.record_success("m", sent=sent)  # sent before B's verdict: says nothing about the model since
    b.tracker.record_success("m", sent=b.tracker.now())  # sent after it: closes, fleet-wide
    assert await a.wait_for(lambda: a.tracker.state("m") is CircuitState.CLOSED, LIMIT)


async def test_an_older_success_elsewhere_does_not_undo_a_fresh_verdict(make_store):
    a, b = make_store(), make_store()
    await synced(a, b)
    sent_before = b.tracker.now()
    a.tracker.record_failure("m", reason="429", retry_after=30)
    assert await b.wait_for(lambda: b.tracker.told_to_wait("m"), LIMIT)
    b.tracker.record_success("m", sent=sent_before)
    c = make_store()  # a process started later reads Redis
    await synced(c)
    assert c.tracker.told_to_wait("m") and not c.tracker.is_available("m")


async def test_a_new_process_starts_with_the_fleets_latency_and_tool_less_marks(make_store):
    a = make_store()
    await synced(a)
    for i in range(30):
        a.tracker.record_reply("m", ttft=0.2 + i / 1000, gaps=[0.01] * 10, cost=0.001)
    a.tracker.mark_tool_less("m")
    assert await a.flush(LIMIT)
    b = make_store()
    assert await b.wait_for(lambda: len(b.tracker.latency("m").ttft) == 30, LIMIT), "latency not shared"
    assert b.tracker.latency("m").ttft.quantile(0.95) == pytest.approx(0.228)
    assert await b.wait_for(lambda: b.tracker.tool_less("m"), LIMIT)


async def test_first_sentence_times_reach_a_new_process(make_store):
    a = make_store()
    await synced(a)
    for i in range(12):  # spoken replies: the bound on the first sentence follows these
        a.tracker.record_reply("m", ttft=0.3, gaps=[], sentence=0.4 + i / 100)
    a.tracker.record_reply("m", ttft=0.3, gaps=[])  # a reply that was not spoken adds none
    assert await a.flush(LIMIT)
    b = make_store()
    assert await b.wait_for(lambda: len(b.tracker.latency("m").sentence) == 12, LIMIT), "first sentences not shared"
    assert b.tracker.latency("m").sentence.quantile(0.95) == pytest.approx(0.51)
    assert len(b.tracker.latency("m").ttft) == 13


async def test_exactly_one_process_gets_the_half_open_trial(make_store):
    stores = [make_store() for _ in range(4)]
    await synced(*stores)
    stores[0].tracker.record_failure("m", reason="429", retry_after=0.05)
    for store in stores:
        assert await store.wait_for(lambda s=store: s.tracker.shared_view("m").failures == 1, LIMIT)
    # After the cooldown every process wants the trial at once; the fleet gives it to one.
    for store in stores:
        assert await store.wait_for(lambda s=store: s.tracker.cooldown_remaining("m") == 0, LIMIT)
        store.tracker.is_available("m")
    holders = []
    for store in stores:
        assert await store.flush(LIMIT)  # its claim has been answered
        if store.tracker.is_available("m"):
            assert store.tracker.begin("m") is True  # the trial, sent at once
            holders.append(store)
    assert len(holders) == 1, f"{len(holders)} processes got the trial"
    holder = holders[0]
    holder.tracker.record_success("m", sent=holder.tracker.now())
    for store in stores:
        assert await store.wait_for(lambda s=store: s.tracker.state("m") is CircuitState.CLOSED, LIMIT)


async def test_hostile_channel_message_and_wrong_typed_key_cost_one_warning_and_no_crash(
        make_store, redis_server, prefix, caplog):
    a, b = make_store(), make_store()
    await synced(a, b)
    caplog.set_level(logging.WARNING, logger="openrouter_voice.fleet")
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        for garbage in (b"\xff\xfe not json", b'{"model": "m", "failures": "NaN"}', b"[1,2]",
                        b'{"model": "m", "open_until": 1e308}', b"x" * 10_000,
                        b'{"kind": "suspect", "model": "m", "until": -1}'):
            await client.publish(f"{prefix}:events", garbage)
        await client.set(f"{prefix}:m:m", "not a hash")
        await client.sadd(f"{prefix}:models", "m")
        a.tracker.record_failure("m", reason="503")  # the script replaces the wrong-typed key
        assert await b.wait_for(lambda: b.tracker.state("m") is CircuitState.OPEN, LIMIT), "sharing stopped"
    finally:
        await client.aclose()
    malformed = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed) == 2, [r.getMessage() for r in caplog.records]  # one per process
    assert a.online and b.online


async def test_no_key_prompt_or_reply_is_stored(make_store, redis_server, prefix):
    a = make_store()
    await synced(a)
    a.tracker.record_failure("m", reason="401 bad key sk-or-v1-0123456789abcdefSECRET", retry_after=1)
    a.tracker.record_reply("m", ttft=0.3, gaps=[0.01], cost=0.002)
    assert await a.flush(LIMIT)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        dump = []
        for key in await client.keys(f"{prefix}:*"):
            kind = (await client.type(key)).decode()
            value = {"hash": client.hgetall, "list": lambda k: client.lrange(k, 0, -1),
                     "set": client.smembers, "string": client.get}[kind](key)
            dump.append(repr(await value))
    finally:
        await client.aclose()
    assert dump and "SECRET" not in " ".join(dump) and "sk-or-v1" not in " ".join(dump)


async def test_a_suspicion_reaches_the_other_process_with_its_expiry_and_its_end(make_store, redis_server, prefix):
    a, b = make_store(), make_store()
    await synced(a, b)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.hset(f"{prefix}:suspect:m2", "a", "b")  # a wrong-typed key is replaced, not an error
        now = a.tracker.now()
        a.tracker.suspect("m2", reason="no first token after 0.70s", until=now + 2.0, since=now - 0.7)
        assert await b.wait_for(lambda: b.tracker.is_suspect("m2"), LIMIT), "B never heard"
        assert b.tracker.suspect_reason("m2") == "no first token after 0.70s"
        assert 0 < b.tracker.suspect_remaining("m2") <= 2.0
        assert 0 < await client.pttl(f"{prefix}:suspect:m2") <= 2000  # gone from Redis when it expires
        b.tracker.spoke("m2", sent=now - 1.0)  # sent before the silent request: proves nothing
        assert b.tracker.is_suspect("m2")
        a.tracker.clear_suspect("m2")
        assert await b.wait_for(lambda: not b.tracker.is_suspect("m2"), LIMIT), "B never heard the end"
        assert await client.exists(f"{prefix}:suspect:m2") == 0
        # A hostile mark cannot suspect a model for long: it is clamped to 30 s.
        await client.publish(f"{prefix}:events", b'{"kind": "suspect", "model": "m3", "until": 1e11, "since": 0}')
        assert await b.wait_for(lambda: b.tracker.is_suspect("m3"), LIMIT)
        assert b.tracker.suspect_remaining("m3") <= 30.0
    finally:
        await client.aclose()
    assert a.online and b.online


async def test_a_process_started_during_a_suspicion_reads_it_from_redis(make_store):
    a = make_store()
    await synced(a)
    a.tracker.record_reply("m", ttft=0.3, gaps=[0.01], cost=0.001)  # the fleet knows the model
    now = a.tracker.now()
    a.tracker.suspect("m", reason="no first token after 0.70s", until=now + 5.0, since=now - 0.7)
    a.tracker.suspect("gone", reason="no first token", until=now + 5.0, since=now - 0.7)
    a.tracker.clear_suspect("gone")
    assert await a.flush(LIMIT)
    c = make_store()  # missed the message: its first read of Redis has the mark, with what is left of it
    await synced(c)
    assert c.tracker.is_suspect("m") and c.tracker.suspect_reason("m") == "no first token after 0.70s"
    assert 0 < c.tracker.suspect_remaining("m") <= 5.0
    assert not c.tracker.is_suspect("gone")  # a cleared mark is not read back


async def test_a_malformed_suspect_mark_does_not_hide_the_models_circuit(make_store, redis_server, prefix):
    a = make_store()
    await synced(a)
    a.tracker.record_failure("m", reason="429 rate limited", retry_after=30)
    assert await a.flush(LIMIT)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set(f"{prefix}:suspect:m", b'{"kind": "suspect", "model": "m", "until": -1}')
    finally:
        await client.aclose()
    c = make_store()  # reads both keys at its start: the circuit is taken, the garbage mark is not
    await synced(c)
    assert c.tracker.told_to_wait("m") and not c.tracker.is_suspect("m")
