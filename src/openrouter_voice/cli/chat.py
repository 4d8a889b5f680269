"""``openrouter-voice chat``: the voice agent's brain in a terminal.

The same :class:`Assistant` (instructions and tools) and :class:`OpenRouterLLM` run in a text-only
LiveKit ``AgentSession``; replies stream to the terminal as they arrive. With no OpenRouter key the
embedded local model answers instead, offline. Piped (``echo "hi" | openrouter-voice chat``) it
prints only the answer on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from typing import TextIO

from livekit.agents import AgentSession
from livekit.agents.voice import io
from rich.console import Console
from rich.markup import escape

from .. import app
from ..agent import Assistant, OpenRouterLLM
from ..app import LocalModel, with_first
from ..config import Settings
from ..local.server import ENDPOINT
from ..router import ConfigurationError, FallbackRouter, Usage
from ..router.catalog import Catalog, CatalogUnavailableError

HELP = "commands: /info  /models [filter]  /switch NAME  /help  /quit"
MAX_QUESTION_CHARS = 20_000
"""A question longer than this (some ten pages) is cut: no voice turn needs more, and every turn resends it."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class TerminalOutput(io.TextOutput):
    """Prints the agent's text as it streams (LiveKit's transcription output for a text session)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(label="terminal", next_in_chain=None)
        self.stream = stream
        self.text = ""

    async def capture_text(self, text: str) -> None:
        self.text += text
        self.stream.write(text)
        self.stream.flush()

    def flush(self) -> None:
        if self.text and not self.text.endswith("\n"):
            self.stream.write("\n")
            self.stream.flush()
        self.text = ""


async def start_local(stack: contextlib.AsyncExitStack, console: Console, *, announce: bool) -> LocalModel | None:
    """Start the embedded model server (once per chat), stopped when ``stack`` closes; None if it cannot run."""
    from ..local import INSTALL_HINT, LocalModelError, LocalModelServer, is_installed

    if not is_installed():
        if announce:
            console.print(f"[red]No OPENROUTER_API_KEY and the local model is not installed.[/red] "
                          f"Fix: set OPENROUTER_API_KEY (https://openrouter.ai/keys) or {escape(INSTALL_HINT)}")
        return None
    try:
        with console.status("Starting the local model (Gemma 3 270M, llama.cpp)..."):
            server = await stack.enter_async_context(LocalModelServer())
    except LocalModelError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        return None
    return LocalModel(f"{server.model}@{ENDPOINT}", server.base_url)


async def build_router(settings: Settings, stack: contextlib.AsyncExitStack, console: Console, *,
                       local_only: bool, model: str | None, catalog: Catalog) -> FallbackRouter | None:
    """The chat's router (see :func:`openrouter_voice.app.build_router`): OpenRouter's chain with
    ``model`` first, checked against ``catalog``, the local model last; or the local model alone when
    there is no key or ``local_only``. None (with the reason printed) when it cannot be built."""
    offline = local_only or not settings.api_key
    local = await start_local(stack, console, announce=offline) if offline or settings.local_fallback else None
    if offline:
        if local is None:
            return None
        name = local.label.split("@")[0]
        console.print(f"[yellow]Using only the local model ({name}).[/yellow]" if local_only else
                      f"[yellow]No OPENROUTER_API_KEY: answering with the local model ({name}, offline, small and "
                      "simple).[/yellow]")
    try:
        with console.status("Checking the model chain against OpenRouter's catalog..."):
            router = await app.build_router(settings, models=[] if offline else with_first(settings.chain(), model),
                                            catalog=catalog, local=local)
    except ConfigurationError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        return None
    stack.push_async_callback(router.aclose)
    return router


def readable(text: str, console: Console) -> str:
    """``text`` as a question: control characters dropped, undecodable bytes (lone surrogates from a
    non-UTF-8 terminal) shown as U+FFFD, cut to :data:`MAX_QUESTION_CHARS` with a note."""
    text = text.strip()
    if len(text) > MAX_QUESTION_CHARS:  # cut first: a 10 MB paste is not copied again and again below
        console.print(f"[yellow]Your question is {len(text):,} characters long; only the first "
                      f"{MAX_QUESTION_CHARS:,} are sent.[/yellow]")
        text = text[:MAX_QUESTION_CHARS]
    return _CONTROL.sub("", text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")).strip()


def read_question(stdin: TextIO, console: Console) -> str:
    """The piped question, read as raw bytes and at most enough for :data:`MAX_QUESTION_CHARS`, so
    binary or non-UTF-8 input gives its readable text and a 10 MB line is never held (or decoded) whole."""
    limit = MAX_QUESTION_CHARS * 4  # UTF-8 takes at most 4 bytes a character
    raw = stdin.buffer.read(limit + 1) if hasattr(stdin, "buffer") else stdin.read(limit + 1).encode(
        "utf-8", "surrogatepass")
    text = raw[:limit].decode("utf-8", "replace")
    if len(raw) > limit:
        console.print(f"[yellow]The input is longer than {limit:,} bytes; only its first "
                      f"{MAX_QUESTION_CHARS:,} characters are sent.[/yellow]")
        text = text[:MAX_QUESTION_CHARS]
    return readable(text, console)


def footer(llm: OpenRouterLLM) -> str:
    completion = llm.last_completion
    if completion is None:
        return "[dim]no model answered[/dim]"
    usage: Usage = completion.usage
    cost = f"${usage.cost:.6f}" if usage.cost is not None else "cost n/a"
    # Some endpoints (the local model among them) send no usage in a stream: unknown is not zero.
    tokens = f"{usage.prompt_tokens}+{usage.completion_tokens} tokens" if usage.total_tokens else "tokens n/a"
    text = f"[dim]{escape(completion.model)} · {tokens} · {cost}"
    if completion.fell_back and completion.fallback_reason:
        text += f" · fallback: {escape(completion.fallback_reason)}"
    return text + "[/dim]"


async def show_models(settings: Settings, catalog: Catalog, console: Console, name: str) -> None:
    from .models import ModelFilter, filter_models, models_table

    try:
        found = await catalog.models()
    except CatalogUnavailableError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        return
    console.print(models_table(filter_models(found, ModelFilter(name or None, tools=True))[:20],
                               chain=settings.chain()))


async def run_chat(settings: Settings, *, message: str | None, model: str | None, local_only: bool,
                   console: Console, out: Console, stdin: TextIO | None = None) -> int:
    """Run the chat; returns the process exit code (0 answered, 1 only apologised, 2 cannot start)."""
    stdin = stdin or sys.stdin
    interactive = message is None and stdin.isatty()
    if message is None and not interactive:
        message = read_question(stdin, console)
        if not message:
            console.print("[red]No question on stdin.[/red] Pipe one in, pass it as an argument, or run in a terminal.")
            return 2
    elif message is not None:
        message = readable(message, console)
    async with contextlib.AsyncExitStack() as stack:
        catalog = Catalog.from_settings(settings)  # one catalog: the chain check, /models and switch_model
        router = await build_router(settings, stack, console, local_only=local_only, model=model, catalog=catalog)
        if router is None:
            return 2
        llm = OpenRouterLLM(router=router, spoken=False)  # read, not heard: no first-sentence check
        session: AgentSession[None] = AgentSession(llm=llm)
        printer = TerminalOutput(out.file)  # type: ignore[arg-type]
        session.output.transcription = printer
        await session.start(app.build_assistant(settings, llm, catalog=catalog))
        stack.push_async_callback(session.aclose)
        if message is not None:
            await session.run(user_input=message)
            console.print(footer(llm))
            return 1 if llm.stats.apologies else 0
        console.print(f"[bold]openrouter-voice chat[/bold] · primary {escape(llm.primary)} · {HELP}")
        while True:
            try:
                line = (await asyncio.to_thread(input, "you> ")).strip()
            except (EOFError, KeyboardInterrupt):
                break
            except UnicodeDecodeError:  # a terminal that is not UTF-8
                console.print("[yellow]That line is not UTF-8 text; please type it again.[/yellow]")
                continue
            line = readable(line, console)
            if not line:
                continue
            if line in ("/quit", "/exit"):
                break
            if line == "/help":
                console.print(HELP)
            elif line == "/info":
                console.print(escape(await Assistant.get_model_info(session.current_agent)))  # type: ignore[arg-type]
            elif line.startswith("/models"):
                await show_models(settings, catalog, console, line.removeprefix("/models").strip())
            elif line.startswith("/switch"):
                answer = await Assistant.switch_model(session.current_agent, line.removeprefix("/switch").strip())  # type: ignore[arg-type]
                console.print(escape(answer))
            else:
                await session.run(user_input=line)
                console.print(footer(llm))
        console.print(f"[dim]session: {escape(llm.stats.summary())}[/dim]")
    return 0
