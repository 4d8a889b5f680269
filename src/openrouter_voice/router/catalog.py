"""OpenRouter's model catalog (``/api/v1/models``): fetched, cached on disk, and used to check a chain.

>>> catalog = Catalog(base_url="https://openrouter.ai/api/v1")
>>> models = await catalog.models()                        # doctest: +SKIP
>>> report = check_chain(["openai/gpt-4o-mini", "google/gemini-1.5-flash"], models)  # doctest: +SKIP
>>> report.kept, [(d.model, d.reason, d.replacement) for d in report.dropped]  # doctest: +SKIP
(['openai/gpt-4o-mini'], [('google/gemini-1.5-flash', 'not in the catalog', 'google/gemini-2.5-flash')])
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2

from ..cache import cache_root
from ..fetch import fetch
from .names import suggest_replacement
from .numbers import count, finite

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger("openrouter_voice.router")

DEFAULT_TTL = 6 * 3600.0
MAX_CATALOG_BYTES = 32 << 20  # OpenRouter's full catalog is a few MB; room to grow, not unbounded
NEAR_EXPIRY_DAYS = 30


class CatalogUnavailableError(Exception):
    """The catalog could not be fetched and no cached copy exists."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One catalog entry, with prices in USD per token."""

    id: str
    name: str
    context_length: int = 0
    prompt_price: float = 0.0
    completion_price: float = 0.0
    supports_tools: bool = False
    expiration_date: dt.date | None = None
    description: str = ""

    @property
    def is_free(self) -> bool:
        return self.id.endswith(":free") or (self.prompt_price == 0 and self.completion_price == 0)

    @property
    def author(self) -> str:
        return self.id.split("/", 1)[0]

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> ModelInfo:
        """One ``/api/v1/models`` entry; :class:`ValueError` if a number in it is not a sane finite one
        (``1e999``, ``NaN``, a 400-digit context length): such an entry cannot be trusted at all."""
        pricing = data.get("pricing") if isinstance(data.get("pricing"), dict) else {}
        assert isinstance(pricing, dict)
        params = data.get("supported_parameters") or []
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            context_length=_int(data.get("context_length")),
            prompt_price=_price(pricing.get("prompt")),
            completion_price=_price(pricing.get("completion")),
            supports_tools=isinstance(params, list) and "tools" in params,
            expiration_date=_date(data.get("expiration_date")),
            description=str(data.get("description") or "")[:500],
        )


def _int(value: Any) -> int:
    if value is None or value == "":
        return 0  # absent
    number = count(value) if not isinstance(value, str) else count(finite(value))
    if number is None:
        raise ValueError(f"context_length {str(value)[:40]!r} is not a sane count")
    return number


def _price(value: Any) -> float:
    if value is None or value == "":
        return 0.0  # absent
    price = finite(value, low=-math.inf)
    if price is None:
        raise ValueError(f"price {str(value)[:40]!r} is not a finite number")
    return price if price >= 0 else 0.0  # "-1" marks variable-priced routers


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


class Catalog:
    """Fetches ``/api/v1/models`` once per ``ttl`` and keeps a copy on disk for offline starts.

    A failed fetch falls back to the cached copy however old it is (a stale catalog beats none).
    """

    def __init__(self, base_url: str = "https://openrouter.ai/api/v1", *, api_key: str | None = None,
                 cache_dir: Path | None = None, ttl: float = DEFAULT_TTL, timeout: float = 5.0,
                 http_client: httpx2.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.ttl = ttl
        self.timeout = timeout
        self._client = http_client
        slug = "".join(c if c.isalnum() else "_" for c in self.base_url)[-80:]
        self.cache_path = (cache_dir or cache_root()) / f"models-{slug}.json"
        self._models: list[ModelInfo] | None = None
        self._fetched_at = 0.0
        self.stale = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Catalog:
        """The catalog of ``OPENROUTER_BASE_URL``, asked with ``OPENROUTER_API_KEY``.

        >>> from openrouter_voice.config import load_settings
        >>> Catalog.from_settings(load_settings(openrouter_base_url="http://127.0.0.1:9/api/v1")).base_url
        'http://127.0.0.1:9/api/v1'
        """
        return cls(settings.openrouter_base_url, api_key=settings.api_key, **overrides)

    async def models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """The catalog: from memory, the disk cache within ``ttl``, or the network."""
        now = time.time()
        if not refresh and self._models is not None and now - self._fetched_at < self.ttl:
            return self._models
        cached = None if refresh else self._read_cache(max_age=self.ttl)
        if cached is not None:
            self._models, self._fetched_at = cached
            return cached[0]
        try:
            payload = await self._fetch()
            models = parse_models(payload)  # a 200 with an unexpected body is as unusable as no answer
        except (httpx2.HTTPError, ValueError) as exc:
            stale = self._read_cache(max_age=None)
            if stale is None:
                raise CatalogUnavailableError(
                    f"could not fetch the model catalog from {self.base_url}/models ({type(exc).__name__}) "
                    "and there is no cached copy") from None
            logger.warning("model catalog unreachable or unreadable (%s); using the cached copy", type(exc).__name__)
            self.stale = True
            self._models, self._fetched_at = stale
            return stale[0]
        self._write_cache(payload)
        self._models, self._fetched_at, self.stale = models, now, False
        return models

    async def get(self, model_id: str) -> ModelInfo | None:
        return next((m for m in await self.models() if m.id == model_id), None)

    async def _fetch(self) -> Any:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        response = await fetch(self._client, f"{self.base_url}/models", headers=headers, seconds=self.timeout,
                               max_bytes=MAX_CATALOG_BYTES)
        response.raise_for_status()
        return response.json()

    def _read_cache(self, *, max_age: float | None) -> tuple[list[ModelInfo], float] | None:
        try:
            stat = self.cache_path.stat()
            if max_age is not None and time.time() - stat.st_mtime > max_age:
                return None
            payload = json.loads(self.cache_path.read_text(encoding="utf-8"))
            return parse_models(payload), stat.st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_cache(self, payload: Any) -> None:
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle)
            os.replace(tmp, self.cache_path)
        except OSError as exc:  # a read-only home must not break start-up
            logger.debug("could not cache the model catalog: %s", exc)


def parse_models(payload: Any) -> list[ModelInfo]:
    """Parse a ``/api/v1/models`` body; entries without an id are skipped, and so are entries with
    numbers that make no sense (one warning for all of them: a catalog is read often)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ValueError("the catalog response has no 'data' list")
    models: list[ModelInfo] = []
    bad: list[str] = []
    for item in data:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        try:
            models.append(ModelInfo.from_payload(item))
        except (ValueError, TypeError, OverflowError) as exc:
            bad.append(f"{str(item.get('id'))[:80]!r} ({exc})")
    if bad:
        logger.warning("skipped %d model catalog entr%s with unusable values: %s", len(bad),
                       "y" if len(bad) == 1 else "ies", "; ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""))
    return models


@dataclass(frozen=True, slots=True)
class DroppedModel:
    model: str
    reason: str
    replacement: str | None


@dataclass(slots=True)
class ChainReport:
    """The outcome of :func:`check_chain`."""

    kept: list[str] = field(default_factory=list)
    dropped: list[DroppedModel] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    without_tools: list[str] = field(default_factory=list)


def check_chain(chain: list[str], models: list[ModelInfo], *, need_tools: bool = True,
                today: dt.date | None = None) -> ChainReport:
    """Check every OpenRouter id of ``chain`` against the catalog.

    Unknown or expired ids are dropped (with a suggested replacement); ids expiring within
    30 days produce a warning; ids without tool support are listed in ``without_tools``.
    ``model@endpoint`` ids are not OpenRouter's and are kept as they are.
    """
    today = today or dt.date.today()
    by_id = {m.id: m for m in models}
    report = ChainReport()
    for model in chain:
        if "@" in model:
            report.kept.append(model)
            continue
        base = model if model in by_id else model.split(":", 1)[0]
        info = by_id.get(model) or (by_id.get(base) if model.endswith((":nitro", ":floor")) else None)
        if info is None:
            report.dropped.append(DroppedModel(model, "not in OpenRouter's catalog (retired or misspelt)",
                                               suggest_replacement(model, models, need_tools=need_tools,
                                                                   today=today)))
            continue
        if info.expiration_date is not None and info.expiration_date <= today:
            report.dropped.append(DroppedModel(model, f"expired on {info.expiration_date.isoformat()}",
                                               suggest_replacement(model, models, need_tools=need_tools,
                                                                   today=today)))
            continue
        if info.expiration_date is not None and (info.expiration_date - today).days <= NEAR_EXPIRY_DAYS:
            report.warnings.append(f"{model} will be retired on {info.expiration_date.isoformat()}")
        if need_tools and not info.supports_tools:
            report.without_tools.append(model)
        report.kept.append(model)
    return report
