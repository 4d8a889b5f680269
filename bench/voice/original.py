"""The original design this project grew from, translated faithfully to a LiveKit ``llm.LLM``.

Per turn, one non-streaming chat completion (``stream: false``, ``temperature`` 0.7, ``max_tokens`` 1000)
carrying only the latest user message, with no timeout. On any exception the model index moves to the
next model of the list and stays there for later turns; after as many attempts as there are models the
turn fails with an error. It is the benchmark's row for "what a user of that design gets today".

>>> OriginalLLM(["a/model", "b/model"], api_key="k", base_url="http://127.0.0.1:9").current
'a/model'
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from livekit.agents import APIConnectionError, APIConnectOptions, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr


class OriginalLLM(llm.LLM[Any]):
    """``models`` tried from the one that last worked; ``base_url`` ends before ``/chat/completions``."""

    def __init__(self, models: list[str], *, api_key: str, base_url: str) -> None:
        super().__init__()
        if not models:
            raise ValueError("OriginalLLM needs at least one model")
        self.models = list(models)
        self.index = 0
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._client = httpx.AsyncClient(timeout=None)  # the design sets no timeout

    @property
    def current(self) -> str:
        return self.models[self.index]

    @property
    def model(self) -> str:
        return self.current

    @property
    def provider(self) -> str:
        return "openrouter"

    def chat(self, *, chat_ctx: llm.ChatContext, tools: list[llm.Tool] | None = None,
             conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
             parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN, tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
             extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN) -> OriginalStream:
        return OriginalStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)

    async def complete(self, text: str) -> str:
        """One turn's answer to ``text``, walking the list from the current model (see the module doc)."""
        error: Exception | None = None
        for _ in self.models:
            try:
                response = await self._client.post(self._url, headers=self._headers, json={
                    "model": self.current, "messages": [{"role": "user", "content": text}],
                    "stream": False, "temperature": 0.7, "max_tokens": 1000})
                response.raise_for_status()
                return str(response.json()["choices"][0]["message"]["content"])
            except Exception as exc:  # the design's "on any exception, the next model"
                error = exc
                self.index = (self.index + 1) % len(self.models)
        raise APIConnectionError(f"all {len(self.models)} models failed: {error!r}", retryable=False)

    async def aclose(self) -> None:
        await self._client.aclose()


class OriginalStream(llm.LLMStream):
    """The whole answer as one chunk, once the non-streaming request returns."""

    async def _run(self) -> None:
        assert isinstance(self._llm, OriginalLLM)
        users = [m for m in self._chat_ctx.messages() if m.role == "user"]
        latest = users[-1].text_content or "" if users else ""
        content = await self._llm.complete(latest)
        self._event_ch.send_nowait(llm.ChatChunk(id=f"orig-{uuid.uuid4().hex[:12]}",
                                                 delta=llm.ChoiceDelta(role="assistant", content=content)))
