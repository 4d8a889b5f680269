"""Catalog fetch, disk cache with TTL, offline fallback, and chain checks."""

from __future__ import annotations

import datetime as dt

import pytest

from openrouter_voice.router.catalog import Catalog, CatalogUnavailableError, check_chain, suggest_replacement
from openrouter_voice.testing import ScriptedUpstream


async def test_catalog_is_fetched_then_served_from_disk_cache(upstream, tmp_path):
    catalog = Catalog(upstream.base_url, cache_dir=tmp_path, ttl=3600)
    models = await catalog.models()
    ids = {m.id for m in models}
    assert "google/gemini-2.5-flash-lite" in ids
    mini = next(m for m in models if m.id == "openai/gpt-4o-mini")
    assert mini.supports_tools and mini.prompt_price == pytest.approx(1.5e-7)
    assert mini.expiration_date == dt.date(2027, 1, 14)
    # A new Catalog (a new process) reads the disk copy instead of the network.
    again = await Catalog(upstream.base_url, cache_dir=tmp_path, ttl=3600).models()
    assert [m.id for m in again] == [m.id for m in models]
    assert upstream.catalog_requests == 1


async def test_catalog_refetches_after_ttl(upstream, tmp_path):
    await Catalog(upstream.base_url, cache_dir=tmp_path, ttl=3600).models()
    await Catalog(upstream.base_url, cache_dir=tmp_path, ttl=0).models()
    assert upstream.catalog_requests == 2


async def test_offline_uses_stale_cache_else_clear_error(tmp_path):
    async with ScriptedUpstream() as up:
        url = up.base_url
        await Catalog(url, cache_dir=tmp_path).models()
    stale = Catalog(url, cache_dir=tmp_path, ttl=0, timeout=0.5)
    models = await stale.models()
    assert models and stale.stale
    with pytest.raises(CatalogUnavailableError, match="no cached copy"):
        await Catalog(url, cache_dir=tmp_path / "empty", timeout=0.5).models()


async def test_check_chain_drops_unknown_and_expired_with_replacements(upstream, tmp_path):
    models = await Catalog(upstream.base_url, cache_dir=tmp_path).models()
    report = check_chain(
        ["google/gemini-1.5-flash", "openai/gpt-4o-mini", "mistralai/mistral-7b-instruct", "gemma@local",
         "anthropic/claude-3-haiku-20240307"],
        models, today=dt.date(2026, 12, 20))
    assert report.kept == ["openai/gpt-4o-mini", "mistralai/mistral-7b-instruct", "gemma@local"]
    dropped = {d.model: d for d in report.dropped}
    assert dropped["google/gemini-1.5-flash"].replacement in {"google/gemini-2.5-flash",
                                                               "google/gemini-2.5-flash-lite"}
    assert dropped["anthropic/claude-3-haiku-20240307"].replacement.startswith("anthropic/")
    assert report.warnings == ["openai/gpt-4o-mini will be retired on 2027-01-14"]
    assert report.without_tools == ["mistralai/mistral-7b-instruct"]
    after = check_chain(["openai/gpt-4o-mini"], models, today=dt.date(2027, 2, 1))
    assert after.kept == [] and "expired" in after.dropped[0].reason


async def test_suggest_replacement_prefers_tool_capable_live_models(upstream, tmp_path):
    models = await Catalog(upstream.base_url, cache_dir=tmp_path).models()
    assert suggest_replacement("mistralai/mistral-7b-instruct-v0.1", models, need_tools=False) == \
        "mistralai/mistral-7b-instruct"


async def test_validate_router_chain_drops_retired_and_marks_tool_support(upstream, make_router, tmp_path, caplog):
    from openrouter_voice.app import check_against_catalog

    router = make_router(["google/gemini-1.5-flash", "mistralai/mistral-7b-instruct", "openai/gpt-4o-mini"])
    report = await check_against_catalog(router, Catalog(upstream.base_url, cache_dir=tmp_path),
                                         today=dt.date(2026, 11, 24))
    assert report is not None
    assert [t.model for t in router.models] == ["mistralai/mistral-7b-instruct", "openai/gpt-4o-mini"]
    assert "dropping google/gemini-1.5-flash" in caplog.text and "try google/gemini-2.5-flash" in caplog.text
    assert not router.supports_tools(router.models[0])
    assert router.supports_tools(router.models[1])


async def test_validate_router_chain_offline_keeps_the_chain(make_router, tmp_path):
    from openrouter_voice.app import check_against_catalog

    router = make_router(["google/gemini-1.5-flash", "openai/gpt-4o-mini"])
    report = await check_against_catalog(router, Catalog("http://127.0.0.1:9/api/v1", cache_dir=tmp_path,
                                                         timeout=0.5))
    assert report is None
    assert [t.model for t in router.models] == ["google/gemini-1.5-flash", "openai/gpt-4o-mini"]
