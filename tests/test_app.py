"""The app's shape: one assembly (app.py), explicit configuration, and the bugs that shape exposed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from openrouter_voice import app
from openrouter_voice.config import Settings
from openrouter_voice.router import FallbackRouter
from openrouter_voice.router.catalog import Catalog
from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY, USER
from tests.timing import halfway

SRC = Path(__file__).resolve().parents[1] / "src" / "openrouter_voice"


def settings_for(upstream, **values) -> Settings:
    return Settings(_env_file=None, openrouter_api_key=TEST_KEY, openrouter_base_url=upstream.base_url,  # type: ignore[call-arg]
                    local_fallback=False, **values)


def test_the_router_never_loads_settings_nor_imports_livekit():
    # At run time: importing the router loads neither config.py nor LiveKit nor OpenTelemetry (telemetry
    # observes it from outside).
    code = ("import sys, openrouter_voice.router as r, openrouter_voice.router.catalog, openrouter_voice.router.names; "
            "bad = [m for m in sys.modules if m == 'openrouter_voice.config' or m.startswith(('livekit', 'opentelemetry'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # In the source, anywhere (a function body too), outside `if TYPE_CHECKING:` blocks.
    for path in (SRC / "router").glob("*.py"):
        for module in runtime_imports(ast.parse(path.read_text())):
            assert "config" not in module.split(".") and not module.startswith(("livekit", "opentelemetry")), (
                path.name, module)


def runtime_imports(tree: ast.AST) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.ImportFrom):
            found.append(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


async def test_hedge_after_none_means_no_hedging_even_when_settings_say_otherwise(upstream):
    upstream.script("a/hangs", Script(hang=True))
    upstream.script("b/ok", Script(text="Here."))
    settings = settings_for(upstream, hedge_after=0.2, first_token_timeout=2.0)
    hedging = FallbackRouter.from_settings(settings, ["a/hangs", "b/ok"])
    plain = FallbackRouter.from_settings(settings, ["a/hangs", "b/ok"], hedge_after=None)
    try:
        assert hedging.hedge_after == 0.2 and plain.hedge_after is None
        for router in (hedging, plain):
            upstream.requests.clear()
            router.health.reset()
            reply = await router.complete(USER)
            assert reply.text == "Here."
            first, second = upstream.requests_for("a/hangs")[0], upstream.requests_for("b/ok")[0]
            waited = second.received_at - first.received_at
            if router is hedging:
                assert waited < halfway(0.2, 2.0)  # hedged after 0.2 s
            else:
                assert waited >= 1.95  # no hedge: the backup only after the 2 s first-token deadline
    finally:
        await hedging.aclose()
        await plain.aclose()


async def test_a_catalog_200_with_an_unexpected_body_uses_the_stale_copy(upstream, tmp_path, caplog):
    good = await Catalog(upstream.base_url, cache_dir=tmp_path, ttl=0).models()
    assert good
    upstream.catalog_body = {"error": {"code": 500, "message": "upstream broke"}}  # a 200 that is not a catalog
    stale = Catalog(upstream.base_url, cache_dir=tmp_path, ttl=0)
    models = await stale.models()
    assert [m.id for m in models] == [m.id for m in good] and stale.stale
    assert "using the cached copy" in caplog.text


async def test_build_router_checks_the_chain_then_adds_the_local_model_last(upstream, tmp_path):
    settings = settings_for(upstream, openrouter_default_model="google/gemini-1.5-flash",
                            openrouter_fallback_models=["openai/gpt-4o-mini"])
    local = app.LocalModel("gemma-3-270m@local", upstream.base_url.replace("/api/v1", "/v1"))
    router = await app.build_router(settings, catalog=Catalog.from_settings(settings, cache_dir=tmp_path),
                                    local=local)
    try:
        assert [t.label for t in router.models] == ["openai/gpt-4o-mini", "gemma-3-270m@local"]  # retired id dropped
        assert [router.supports_tools(t) for t in router.models] == [True, False]
    finally:
        await router.aclose()
    alone = await app.build_router(settings, models=[], local=local)
    try:
        assert [t.label for t in alone.models] == ["gemma-3-270m@local"] and alone.hedge_after is None
    finally:
        await alone.aclose()
