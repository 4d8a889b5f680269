"""Names to catalog ids: the one place where a spoken or typed model name becomes an OpenRouter id.

Spoken names ("switch to Gemini Flash", "use GPT four o mini") go through :func:`resolve_spoken_name`;
an id that is not in the catalog (retired, misspelt) gets its closest live id from
:func:`suggest_replacement`. Both match with rapidfuzz.

Speech-to-text writes numbers as words and mishears brand names, so matching normalises numbers
("four point one" -> "4.1", "four o" -> "4o"), drops filler words, and compares tokens fuzzily.

>>> resolve_spoken_name("claude haiku four point five", models).model_id  # doctest: +SKIP
'anthropic/claude-haiku-4.5'
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rapidfuzz import fuzz, process

if TYPE_CHECKING:
    from .catalog import ModelInfo

_NUMBERS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12"}
_FILLER = {"the", "a", "an", "model", "please", "to", "use", "switch", "change", "try", "llm", "version",
           "from", "by", "one", "instead", "now"}
# What speech-to-text writes for words of model names.
_SOUNDS_LIKE = {"light": "lite", "oh": "o", "four0": "4o", "quen": "qwen", "gwen": "qwen", "lamma": "llama"}
_VENDOR_WORDS = {"google", "openai", "anthropic", "meta", "mistral", "mistralai", "meta-llama", "x-ai",
                 "deepseek", "qwen", "free"}


def normalise(text: str) -> list[str]:
    """Lower-case tokens with spoken numbers turned into digits.

    >>> normalise("GPT four point one mini")
    ['gpt', '4.1', 'mini']
    >>> normalise("gpt-4o-mini")
    ['gpt', '4o', 'mini']
    """
    raw = re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower().replace("-", " ").replace("_", " "))
    # "one" is usually filler ("the fast one") unless it is part of a version ("one point five").
    raw = [_SOUNDS_LIKE.get(w, w) for w in raw]

    def near_point(i: int) -> bool:
        return (i + 1 < len(raw) and raw[i + 1] == "point") or (i > 0 and raw[i - 1] == "point")

    words = [w if w == "one" and not near_point(i) else _NUMBERS.get(w, w) for i, w in enumerate(raw)]
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "point" and out and out[-1].isdigit() and i + 1 < len(words) and words[i + 1].isdigit():
            out[-1] = f"{out[-1]}.{words[i + 1]}"
            i += 2
            continue
        if word == "o" and out and out[-1][-1:].isdigit():
            out[-1] += "o"  # "four o" -> "4o"
            i += 1
            continue
        out.append(word)
        i += 1
    return [w for w in out if w not in _FILLER]


def _model_tokens(model: ModelInfo) -> set[str]:
    name = model.name.split(":", 1)[-1]  # "Google: Gemini 2.5 Flash" -> " Gemini 2.5 Flash"
    return set(normalise(model.id.split("/", 1)[-1])) | set(normalise(name))


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a spoken name resolved to: one id, several candidates, or nothing."""

    model_id: str | None
    candidates: list[ModelInfo] = field(default_factory=list)
    query: str = ""
    ambiguous: bool = False  # several models match every spoken word


def _token_matches(token: str, tokens: set[str]) -> bool:
    if token in tokens:
        return True
    # Fuzzy only for words (STT mishearings like "jemini"); numbers must match exactly.
    return not any(c.isdigit() for c in token) and len(token) > 3 and any(
        abs(len(token) - len(t)) <= 1 and fuzz.ratio(token, t) >= 80
        for t in tokens if not any(c.isdigit() for c in t))


def resolve_spoken_name(spoken: str, models: list[ModelInfo], *, need_tools: bool = True,
                        today: dt.date | None = None) -> Resolution:
    """Match ``spoken`` against the catalog.

    Every spoken token must match a token of the model's id or name. One match wins; among several,
    a model whose tokens are exactly the spoken ones (ignoring vendor words) wins; otherwise the
    result is ambiguous, with the likeliest candidates (tool-capable, shortest names first).
    """
    today = today or dt.date.today()
    query = normalise(spoken)
    live = [m for m in models if m.expiration_date is None or m.expiration_date > today]
    if need_tools:
        # Tool-capable models first; the others stay reachable when asked for by name.
        live.sort(key=lambda m: not m.supports_tools)
    exact_id = next((m for m in live if m.id.lower() == spoken.strip().lower()), None)
    if exact_id is not None:
        return Resolution(exact_id.id, [exact_id], spoken)
    if not query:
        return Resolution(None, [], spoken)
    matching = [m for m in live if all(_token_matches(t, _model_tokens(m)) for t in query)]
    if len(matching) == 1:
        return Resolution(matching[0].id, matching, spoken)
    if matching:
        wanted = set(query) - _VENDOR_WORDS
        exact = [m for m in matching if (_model_tokens(m) - _VENDOR_WORDS) == wanted]
        if len(exact) == 1:
            return Resolution(exact[0].id, exact, spoken)
        if not any(any(c.isdigit() for c in t) for t in wanted):
            # No version spoken: "gemini flash" means the model named just that, whatever its version.
            words_only = [m for m in matching
                          if {t for t in _model_tokens(m) - _VENDOR_WORDS if not t[0].isdigit()} == wanted]
            if len(words_only) == 1:
                return Resolution(words_only[0].id, words_only, spoken)
        matching.sort(key=lambda m: (need_tools and not m.supports_tools, len(_model_tokens(m) - set(query)),
                                     len(m.name), m.id))
        return Resolution(None, matching[:3], spoken, ambiguous=True)
    # Nothing matched every word: suggest the closest names.
    choices = {m.id: " ".join(sorted(_model_tokens(m))) for m in live}
    best = process.extract(" ".join(query), choices, scorer=fuzz.token_set_ratio, limit=3, score_cutoff=50)
    by_id = {m.id: m for m in live}
    return Resolution(None, [by_id[key] for _, _, key in best], spoken)


def spoken_model_name(model: ModelInfo) -> str:
    """How to say a model's name: 'Gemini 2.5 Flash' rather than 'Google: Gemini 2.5 Flash'."""
    return model.name.split(":", 1)[-1].strip() or model.id


def suggest_replacement(model_id: str, models: list[ModelInfo], *, need_tools: bool = True,
                        today: dt.date | None = None) -> str | None:
    """The closest live catalog id to ``model_id`` (same author preferred), e.g. for a retired id.

    >>> from openrouter_voice.router.catalog import ModelInfo
    >>> live = [ModelInfo("google/gemini-2.5-flash", "Gemini 2.5 Flash", supports_tools=True),
    ...         ModelInfo("openai/gpt-4o-mini", "GPT-4o mini", supports_tools=True)]
    >>> suggest_replacement("google/gemini-1.5-flash", live)
    'google/gemini-2.5-flash'
    """
    today = today or dt.date.today()
    live = [m for m in models if m.expiration_date is None or m.expiration_date > today]
    if need_tools:
        live = [m for m in live if m.supports_tools] or live
    author = model_id.split("/", 1)[0]
    same_author = [m.id for m in live if m.author == author and m.id != model_id]
    pool = same_author or [m.id for m in live if m.id != model_id]
    match = process.extractOne(model_id, pool, scorer=fuzz.ratio, score_cutoff=30)
    return str(match[0]) if match else (same_author[0] if same_author else None)
