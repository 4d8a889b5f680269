"""The ``openrouter-voice`` command: agent, chat, models, health, doctor.

>>> # openrouter-voice chat            talk in text through the router and the agent's tools
>>> # openrouter-voice talk q.wav       one voice turn through the worker's pipeline, offline without keys
>>> # openrouter-voice agent dev       run the LiveKit voice worker (dev|start|console|download-files)
>>> # openrouter-voice models --tools  OpenRouter's catalog, filtered
>>> # openrouter-voice health          the model health the fleet shares (live; --once, --json)
>>> # openrouter-voice doctor          check every setting and say how to fix it
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..config import ConfigError, Settings, load_settings
from ..redact import RedactingFilter
from ..router.catalog import Catalog, CatalogUnavailableError

app = typer.Typer(
    name="openrouter-voice",
    help="A LiveKit voice agent whose brain is OpenRouter, behind a resilient fallback router.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def setup_logging(debug: bool) -> None:
    """Log to stderr through a filter that masks secrets, whatever the level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("openrouter_voice").setLevel(logging.DEBUG if debug else logging.WARNING)
    for noisy in ("httpx2", "httpcore2", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@contextmanager
def exporting_telemetry() -> Iterator[None]:
    """Telemetry for a short command: started from the ``OTEL_*`` settings (nothing when none is set),
    flushed before the command exits, so a single piped question shows up in the backend."""
    from rich.markup import escape

    from ..telemetry import TelemetryConfigError, start_telemetry

    try:
        telemetry = start_telemetry()
    except TelemetryConfigError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    try:
        yield
    finally:
        telemetry.shutdown()  # flushes what was recorded


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def agent(ctx: typer.Context) -> None:
    """Run the LiveKit voice worker: dev | start | console | download-files (livekit's own subcommands)."""
    settings = settings_or_exit()
    setup_logging(settings.debug)
    from ..agent.worker import run_worker

    run_worker(list(ctx.args))


@app.command()
def chat(
    message: Annotated[str | None, typer.Argument(help="Ask one question and exit (else read stdin or chat).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Put this model first in the chain.")] = None,
    local: Annotated[bool, typer.Option("--local", help="Use only the embedded local model.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every attempt.")] = False,
) -> None:
    """Chat in text through the same router, instructions and tools as the voice agent.

    Interactive on a terminal (commands: /info, /models, /switch NAME, /quit); piped, it answers the
    question on stdin and prints only the answer on stdout.
    """
    settings = settings_or_exit()
    setup_logging(settings.debug)
    if verbose:
        logging.getLogger("openrouter_voice").setLevel(logging.INFO)
    from .chat import run_chat

    with exporting_telemetry():
        code = asyncio.run(run_chat(settings, message=message, model=model, local_only=local,
                                    console=console, out=out))
    raise typer.Exit(code)


def _price(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value} is not a price: use a number of USD per million tokens, e.g. 0.5")
    return value


@app.command()
def talk(
    questions: Annotated[list[Path], typer.Argument(help="WAV files, one question each (several: a conversation).")],
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Write the agent's spoken replies here.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every attempt.")] = False,
) -> None:
    """Ask by voice: each WAV goes through the worker's pipeline (VAD, turn detector, STT, router, TTS)
    without a LiveKit room; prints what was heard, the answer, the model and the stage timings.

    Offline with no keys (local speech engines and local model).
    """
    settings = settings_or_exit()
    setup_logging(settings.debug)
    if verbose:
        logging.getLogger("openrouter_voice").setLevel(logging.INFO)
    from .talk import run_talk

    with exporting_telemetry():
        code = asyncio.run(run_talk(settings, questions, out=out_file, console=console))
    raise typer.Exit(code)


@app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="Substring of the id or name, e.g. 'gemini'.")] = None,
    tools: Annotated[bool, typer.Option("--tools", help="Only models that support tool calling.")] = False,
    max_price: Annotated[float | None, typer.Option("--max-price", help="Max prompt price, USD per M tokens.",
                                                    callback=_price)] = None,
    min_context: Annotated[int | None, typer.Option("--min-context", help="Minimum context length.", min=0)] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Ignore the on-disk cache.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many rows.", min=1)] = 50,
) -> None:
    """List OpenRouter's model catalog (cached on disk), cheapest first."""
    from .models import ModelFilter, filter_models, models_table

    settings = settings_or_exit()
    setup_logging(settings.debug)
    catalog = Catalog.from_settings(settings)
    try:
        with console.status("Fetching the model catalog..."):
            found = asyncio.run(catalog.models(refresh=refresh))
    except CatalogUnavailableError as exc:
        console.print(f"[red]{exc}[/red]\nFix: check the network, or OPENROUTER_BASE_URL.")
        raise typer.Exit(1) from None
    if catalog.stale:
        console.print("[yellow]offline: showing the cached catalog[/yellow]")
    chosen = filter_models(found, ModelFilter(name, tools, max_price, min_context))
    out.print(models_table(chosen[:limit], chain=settings.chain()))
    if len(chosen) > limit:
        console.print(f"{len(chosen) - limit} more; use --limit or a filter")


@app.command()
def health(
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit (for scripts).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one snapshot as JSON and exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.", min=0.1)] = 1.0,
) -> None:
    """Show the model health the fleet shares: state, cooldown and why, TTFT, hedge delay, failures, cost."""
    from .health import run_health

    settings = settings_or_exit()
    setup_logging(settings.debug)
    raise typer.Exit(run_health(settings, once=once, as_json_output=as_json, interval=interval, out=out, err=console))


@app.command()
def doctor(
    quick: Annotated[bool, typer.Option("--quick", help="don't start the local model for a test answer")] = False,
) -> None:
    """Check every setting and say exactly what is missing or wrong and how to fix it."""
    from rich.markup import escape
    from rich.table import Table

    from .doctor import Status, run_checks

    settings = settings_or_exit()
    setup_logging(settings.debug)
    with exporting_telemetry(), console.status("Checking key, catalog and settings..."):
        checks = asyncio.run(run_checks(settings, quick=quick))
    table = Table(title="openrouter-voice doctor")
    table.add_column("")
    table.add_column("what")
    table.add_column("status")
    table.add_column("fix")
    marks = {Status.OK: "[green]✓[/green]", Status.WARN: "[yellow]![/yellow]", Status.FAIL: "[red]✗[/red]",
             Status.INFO: "·"}
    for check in checks:
        table.add_row(marks[check.status], escape(check.area), escape(check.detail), escape(check.fix))
    out.print(table)
    failures = sum(c.status is Status.FAIL for c in checks)
    out.print(f"{failures} problem(s) to fix" if failures else "all good")
    raise typer.Exit(1 if failures else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
