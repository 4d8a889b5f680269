"""``openrouter-voice models``: OpenRouter's catalog as a filterable table."""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

from ..router.catalog import ModelInfo


@dataclass(frozen=True, slots=True)
class ModelFilter:
    """Filters for the catalog table; prices are USD per million tokens."""

    name: str | None = None
    tools: bool = False
    max_prompt_price: float | None = None
    min_context: int | None = None

    def matches(self, model: ModelInfo) -> bool:
        if self.name:
            needle = self.name.lower()
            if needle not in model.id.lower() and needle not in model.name.lower():
                return False
        if self.tools and not model.supports_tools:
            return False
        if self.max_prompt_price is not None and model.prompt_price * 1e6 > self.max_prompt_price:
            return False
        return self.min_context is None or model.context_length >= self.min_context


def filter_models(models: list[ModelInfo], flt: ModelFilter) -> list[ModelInfo]:
    """Matching models, cheapest first (prompt + completion price), then by id."""
    chosen = [m for m in models if flt.matches(m)]
    return sorted(chosen, key=lambda m: (m.prompt_price + m.completion_price, m.id))


def models_table(models: list[ModelInfo], *, chain: list[str] | None = None) -> Table:
    """A rich table: id, name, context, $/M prompt and completion, tools, expiry; chain members marked."""
    table = Table(title=f"{len(models)} models", show_lines=False)
    table.add_column("id", style="bold")
    table.add_column("name")
    table.add_column("context", justify="right")
    table.add_column("$/M in", justify="right")
    table.add_column("$/M out", justify="right")
    table.add_column("tools", justify="center")
    table.add_column("expires")
    chain = chain or []
    for model in models:
        marker = " *" if model.id in chain else ""
        table.add_row(
            escape(model.id) + marker, escape(model.name), f"{model.context_length:,}",
            f"{model.prompt_price * 1e6:.3f}", f"{model.completion_price * 1e6:.3f}",
            "yes" if model.supports_tools else "-",
            model.expiration_date.isoformat() if model.expiration_date else "",
        )
    return table
