"""``openrouter-voice doctor``: check every setting and say what is wrong and how to fix it.

The checks return data (:class:`Check`) so they can be tested and rendered separately; no check
ever prints a secret.

>>> checks = await run_checks(load_settings())  # doctest: +SKIP
>>> [c for c in checks if c.status is Status.FAIL]  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import importlib.util
import shutil
import time
from dataclasses import dataclass

import httpx2

from .. import app
from ..config import Settings
from ..fetch import fetch
from ..redact import redact
from ..router import ConfigurationError
from ..router.catalog import MAX_CATALOG_BYTES, Catalog, CatalogUnavailableError, check_chain

CALL_TIMEOUT = 5.0  # seconds for each whole network check


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    area: str
    status: Status
    detail: str
    fix: str = ""


async def check_key(settings: Settings, client: httpx2.AsyncClient) -> list[Check]:
    """Validity and credit of OPENROUTER_API_KEY via ``/api/v1/key``."""
    key = settings.api_key
    if not key:
        return [Check("OPENROUTER_API_KEY", Status.WARN, "not set: `chat` runs on the embedded local model",
                      "create a key at https://openrouter.ai/keys and set OPENROUTER_API_KEY in .env")]
    try:
        response = await fetch(client, f"{settings.openrouter_base_url}/key",
                               headers={"Authorization": f"Bearer {key}"}, seconds=CALL_TIMEOUT, max_bytes=1 << 20)
    except (httpx2.HTTPError, ValueError) as exc:
        return [Check("OPENROUTER_API_KEY", Status.WARN,
                      f"could not reach {settings.openrouter_base_url} ({type(exc).__name__}); key not verified",
                      "check the network or OPENROUTER_BASE_URL")]
    if response.status_code == 401:
        return [Check("OPENROUTER_API_KEY", Status.FAIL, "rejected by OpenRouter (401): the key is invalid or revoked",
                      "create a new key at https://openrouter.ai/keys and update OPENROUTER_API_KEY")]
    if response.status_code != 200:
        return [Check("OPENROUTER_API_KEY", Status.WARN, f"/key answered HTTP {response.status_code}",
                      "try again later")]
    try:
        data = response.json().get("data") or {}
    except ValueError:
        data = {}
    remaining = data.get("limit_remaining")
    usage = data.get("usage")
    detail = "valid"
    if isinstance(usage, int | float):
        detail += f", ${usage:.4f} used"
    if data.get("is_free_tier"):
        detail += ", free tier (':free' models limited to 50 requests/day)"
    checks = []
    if isinstance(remaining, int | float) and remaining <= 0:
        checks.append(Check("OPENROUTER_API_KEY", Status.FAIL, detail + ", no credit left (limit reached)",
                            "add credits at https://openrouter.ai/settings/credits or raise the key's limit"))
    else:
        if isinstance(remaining, int | float):
            detail += f", ${remaining:.2f} left"
        checks.append(Check("OPENROUTER_API_KEY", Status.OK, detail))
    return checks


async def check_chain_against_catalog(settings: Settings, catalog: Catalog,
                                      today: dt.date | None = None) -> list[Check]:
    """Every chain id exists, is not past or near its expiration date, and supports tools."""
    chain = settings.chain()
    try:
        models = await catalog.models()
    except CatalogUnavailableError as exc:
        return [Check("model chain", Status.WARN, f"{exc}; ids not verified", "run again with network access")]
    report = check_chain(chain, models, need_tools=True, today=today)
    checks: list[Check] = []
    for dropped in report.dropped:
        fix = f"replace it, e.g. with {dropped.replacement}" if dropped.replacement else "remove it"
        checks.append(Check(dropped.model, Status.FAIL, dropped.reason,
                            f"{fix} in OPENROUTER_DEFAULT_MODEL / OPENROUTER_FALLBACK_MODELS"))
    for warning in report.warnings:
        model = warning.split(" ", 1)[0]
        checks.append(Check(model, Status.WARN, warning, "plan a replacement before that date"))
    for model in report.without_tools:
        checks.append(Check(model, Status.WARN, "does not support tool calling: it will answer without tools",
                            "prefer a model whose catalog entry lists 'tools'"))
    ok = [m for m in report.kept if "@" not in m and m not in report.without_tools
          and all(m not in w for w in report.warnings)]
    for model in ok:
        checks.append(Check(model, Status.OK, "in the catalog, supports tools"))
    if not report.kept:
        checks.append(Check("model chain", Status.FAIL, "no usable model left in the chain",
                            "set OPENROUTER_DEFAULT_MODEL to a current id (`openrouter-voice models --tools`)"))
    return checks


async def check_assembly(settings: Settings, catalog: Catalog) -> list[Check]:
    """The chain the app really runs: assembled as ``chat`` and the worker assemble it (the local
    model, checked on its own below, is not started here)."""
    try:
        router = await app.build_router(settings, catalog=catalog)
    except ConfigurationError as exc:
        return [Check("model chain", Status.FAIL, str(exc),
                      "fix OPENROUTER_DEFAULT_MODEL / OPENROUTER_FALLBACK_MODELS")]
    await router.aclose()
    labels = [t.label for t in router.models]
    return [Check("model chain", Status.INFO, "turns go to " + " -> ".join(labels))]


async def check_endpoints(settings: Settings, client: httpx2.AsyncClient) -> list[Check]:
    """Each ``model@endpoint`` of the chain: its endpoint answers ``GET /models`` and lists the model."""
    checks: list[Check] = []
    for model in settings.chain():
        label, _, name = model.rpartition("@")
        if not label or name == "local":  # the local model has its own check
            continue
        endpoint = settings.endpoints[name]  # settings guarantee it is defined
        key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
        try:
            response = await fetch(client, f"{endpoint.base_url.rstrip('/')}/models",
                                   headers={"Authorization": f"Bearer {key}"} if key else {}, seconds=CALL_TIMEOUT,
                                   max_bytes=MAX_CATALOG_BYTES)
            response.raise_for_status()
            listed = {str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)}
        except (httpx2.HTTPError, ValueError, AttributeError) as exc:
            checks.append(Check(model, Status.FAIL, f"endpoint {name!r} ({endpoint.base_url}) does not answer: "
                                f"{type(exc).__name__}", "start it, or fix its base_url in OPENROUTER_VOICE_ENDPOINTS"))
            continue
        if listed and label not in listed:
            checks.append(Check(model, Status.FAIL, f"endpoint {name!r} does not serve {label!r} "
                                f"(it serves: {', '.join(sorted(listed)[:5])})", "use one of those ids"))
        else:
            checks.append(Check(model, Status.OK, f"endpoint {name!r} answers"))
    return checks


def check_voice_settings(settings: Settings) -> list[Check]:
    """LiveKit, Deepgram and Cartesia settings needed by the voice worker."""
    checks: list[Check] = []
    url = settings.livekit_url
    if not url:
        checks.append(Check("LIVEKIT_URL", Status.FAIL, "not set (needed by `agent dev|start`)",
                            "set LIVEKIT_URL=wss://<project>.livekit.cloud (or ws://localhost:7880)"))
    elif not url.startswith(("ws://", "wss://", "http://", "https://")):
        checks.append(Check("LIVEKIT_URL", Status.FAIL, f"{url!r} is not a ws(s):// URL",
                            "use the URL shown in your LiveKit project settings, e.g. wss://x.livekit.cloud"))
    else:
        checks.append(Check("LIVEKIT_URL", Status.OK, url))
    for name, value in (("LIVEKIT_API_KEY", settings.livekit_api_key),
                        ("LIVEKIT_API_SECRET", settings.livekit_api_secret)):
        if value:
            checks.append(Check(name, Status.OK, "set"))
        else:
            checks.append(Check(name, Status.FAIL, "not set (needed by the voice worker)",
                                f"set {name} from your LiveKit dashboard"))
    # Speech providers are optional: without them the local engines hear and speak (less well).
    for name, value, engine in (("DEEPGRAM_API_KEY", settings.deepgram_api_key, "PocketSphinx hears"),
                                ("CARTESIA_API_KEY", settings.cartesia_api_key, "the local voice speaks")):
        service = name.split("_", 1)[0].capitalize()
        if value:
            checks.append(Check(name, Status.OK, f"set (the local engine backs {service} up)"))
        else:
            checks.append(Check(name, Status.WARN, f"not set: {engine} instead (offline, less accurate)",
                                f"set {name} from your {service} dashboard"))
    from ..speech.local_tts import ESPEAK_HINT

    if shutil.which("espeak-ng") is None:
        checks.append(Check("local voice", Status.FAIL, "espeak-ng is missing: the last-resort voice cannot speak",
                            ESPEAK_HINT.split("Fix: ", 1)[-1]))
    else:
        checks.append(Check("local voice", Status.OK, "Piper voice 'joe' with espeak-ng phonemes"))
    return checks


async def check_local_model(*, answer: bool = True) -> list[Check]:
    """Whether the embedded local model (llama.cpp + Gemma 3 270M) is installed and, with ``answer``,
    whether it really answers: a llama.cpp built for another CPU installs fine and crashes at its
    first generation."""
    from ..local import INSTALL_HINT, LocalModelError, LocalModelServer, is_installed
    from ..local.server import REBUILD_HINT

    if not is_installed():
        return [Check("local model", Status.WARN, "not installed: no offline answers", INSTALL_HINT)]
    if not answer:
        return [Check("local model", Status.OK, "llama.cpp and Gemma 3 270M installed (not started: --quick)")]
    server = LocalModelServer(startup_timeout=60)
    try:
        async with server:
            started = time.perf_counter()
            try:
                async with httpx2.AsyncClient(timeout=60.0, trust_env=False) as client:
                    response = await client.post(f"{server.base_url}/chat/completions", json={
                        "model": server.model, "max_tokens": 4, "messages": [{"role": "user", "content": "Say OK."}]})
                    response.raise_for_status()
            except httpx2.HTTPError as exc:
                await asyncio.sleep(0.3)  # a crash shows as a dropped connection first, the exit a moment later
                crashed = server.crashed
                if crashed:
                    return [Check("local model", Status.FAIL, f"installed, but the server crashed at its first "
                                  f"answer ({crashed.split(';')[0]})", REBUILD_HINT)]
                return [Check("local model", Status.FAIL, f"installed, but its first answer failed: "
                              f"{type(exc).__name__}: {redact(str(exc))[:200]}",
                              "run `openrouter-voice chat --local` to see more")]
            took = time.perf_counter() - started
    except LocalModelError as exc:
        message = str(exc)
        return [Check("local model", Status.FAIL, f"installed, but {redact(message)[:400]}",
                      REBUILD_HINT if "killed by" in message else "see the server's error above")]
    return [Check("local model", Status.OK, f"answers offline (a first reply in {took:.1f} s)")]


def check_turn_detector() -> list[Check]:
    """Whether LiveKit's offline turn detector can be used (else VAD endpointing)."""
    if importlib.util.find_spec("livekit.agents.inference") is None:
        return [Check("turn detector", Status.WARN, "livekit.agents.inference not available: VAD endpointing",
                      "pip install livekit-local-inference")]
    if importlib.util.find_spec("livekit.local_inference") is None:
        return [Check("turn detector", Status.WARN, "livekit-local-inference missing: VAD endpointing",
                      "pip install livekit-local-inference")]
    return [Check("turn detector", Status.OK, "LiveKit turn detector available offline")]


async def run_checks(settings: Settings, *, catalog: Catalog | None = None, quick: bool = False) -> list[Check]:
    """Run every check and return the report lines in display order (``quick``: don't start the local model)."""
    async with httpx2.AsyncClient(timeout=CALL_TIMEOUT) as client:
        checks = await check_key(settings, client)
        catalog = catalog or Catalog.from_settings(settings, http_client=client)
        checks += await check_chain_against_catalog(settings, catalog)
        checks += await check_assembly(settings, catalog)
        checks += await check_endpoints(settings, client)
    checks += check_voice_settings(settings)
    checks += check_turn_detector()
    checks += await check_local_model(answer=not quick)
    return checks
