"""The local model's prompt: a chat turned into a few-shot ``Q: / A:`` completion for a base model.

Gemma 3 270M here is the *base* model: it follows no instructions, but it continues a pattern. So
the local server formats every chat request as a short preamble and worked question/answer examples
(greetings, facts, sums in digits, and "I'm not sure" for live or personal data it cannot have),
then the conversation's last exchanges and the question, and lets the model write one answer line.
Measured on the 40 everyday questions in ``bench/offline`` (BENCHMARKS.md), this answers more of
them correctly or honestly than the instruction-style ``### Prompt: / ### Response:`` layout.

The chat's system messages (the voice instructions, the no-tools notice) are not sent to the model:
it cannot follow them, and leaving them out keeps the prompt's start identical on every request, so
llama.cpp reuses its evaluated prefix and only the question is processed before the first token.

>>> render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]).endswith(
...     "Nice to meet you too!\\nQ: Hi!\\nA:")
True
>>> render([{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello, I"}])[-18:]
'Q: Hi!\\nA: Hello, I'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

CHAT_FORMAT = "openrouter-voice-qa"
"""The name the local server knows this format by (``--chat_format``)."""

PREAMBLE = (
    "A friendly voice assistant answers questions in one short sentence. It has no internet access, so "
    "for anything live (weather, news, prices, scores, the time or date) it says it can't look that up. "
    'When it does not know something, it says "I\'m not sure."'
)

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Hi there!", "Hi! How can I help you?"),
    ("What is the capital of Italy?", "Rome."),
    ("What is 6 plus 1?", "6 + 1 = 7."),
    ("Is the traffic bad on the highway?", "I'm not sure, I can't look that up right now."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("Thanks a lot!", "You're welcome!"),
    ("Who wrote Hamlet?", "William Shakespeare."),
    ("What is twelve minus five?", "12 - 5 = 7."),
    ("What's my dog's name?", "I'm not sure, you haven't told me."),
    ("How many minutes are in an hour?", "An hour has sixty minutes."),
    ("Are you a robot?", "I'm a voice assistant running on this computer."),
    ("What animal says moo?", "A cow."),
    ("What am I holding?", "I'm not sure, I can't see you."),
    ("Is my flight on time?", "I'm not sure, I can't look that up right now."),
    ("What is 20 divided by 2?", "20 / 2 = 10."),
    ("Nice to meet you.", "Nice to meet you too!"),
)
"""Worked examples: each kind of answer once or twice, none about a topic users commonly ask next
(a 270M model copies an example's answer into a question on the same topic)."""

STOP = ["\n", "Q:"]
"""One answer line: the model would otherwise go on to write the next question itself."""

HISTORY_MESSAGES = 4
"""The conversation's last two exchanges go before the question, for follow-ups ("and in Spain?")."""

_SPACE = re.compile(r"\s+")


def _text(content: Any) -> str:
    # OpenAI content is a string or a list of parts; only text parts mean anything to this model.
    if isinstance(content, str):
        return _SPACE.sub(" ", content).strip()
    if isinstance(content, list):
        return _text(" ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping)))
    return ""


def render(messages: Iterable[Mapping[str, Any]]) -> str:
    """The completion prompt for a chat: preamble, examples, recent exchanges, then ``A:`` to complete.

    A trailing assistant message (a partial reply to continue) is left open after ``A:``.
    """
    turns = [(m.get("role"), _text(m.get("content"))) for m in messages]
    turns = [(role, text) for role, text in turns if role in ("user", "assistant") and text]
    open_reply = turns.pop()[1] if turns and turns[-1][0] == "assistant" else None
    lines = [PREAMBLE, ""]
    lines += [f"Q: {q}\nA: {a}" for q, a in EXAMPLES]
    lines += [f"{'Q' if role == 'user' else 'A'}: {text}" for role, text in turns[-(HISTORY_MESSAGES + 1):]]
    prompt = "\n".join(lines)
    return f"{prompt}\nA: {open_reply}" if open_reply is not None else f"{prompt}\nA:"


def _format(messages: list[Any], **_: Any) -> Any:
    from llama_cpp import llama_chat_format

    return llama_chat_format.ChatFormatterResponse(prompt=render(messages), stop=list(STOP))


def register() -> None:
    """Make :data:`CHAT_FORMAT` known to llama.cpp's server (run in its process before it starts)."""
    from llama_cpp import llama_chat_format

    llama_chat_format.register_chat_format(CHAT_FORMAT)(_format)
