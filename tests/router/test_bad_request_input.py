"""Bad input from the caller gets a clear answer before any request, never a bare Python error."""

from __future__ import annotations

import pytest

from openrouter_voice.agent import APOLOGY, OpenRouterLLM
from openrouter_voice.router import BadRequestError, ConfigurationError, FallbackRouter
from openrouter_voice.testing import Script
from tests.agent.test_llm import collect, make_llm, user_says  # noqa: F401 (fixture)


@pytest.mark.parametrize(("argument", "value"), [("app_name", "My\r\nX-Injected: 1"), ("app_name", "Café"),
                                                 ("app_url", "https://example.com/\n"), ("app_url", "https://é.fr")])
def test_app_attribution_that_cannot_go_in_a_header_is_refused_at_construction(argument, value):
    with pytest.raises(ConfigurationError, match=argument):
        FallbackRouter(["a/x"], **{argument: value})


async def test_a_lone_surrogate_is_replaced_before_any_request(upstream, make_router):
    upstream.script("a/x", Script(text="Fine."))
    reply = await make_router(["a/x"]).complete([{"role": "user", "content": "caf\udce9 and \ud83d\ude00"}])
    assert reply.text == "Fine."
    assert upstream.requests[-1].messages[-1]["content"] == "caf\ufffd and \U0001f600"


async def test_a_request_that_cannot_be_json_is_a_bad_request_at_once(upstream, make_router):
    router = make_router(["a/x", "b/y"])
    with pytest.raises(BadRequestError, match="cannot be sent as JSON"):
        await router.complete([{"role": "user", "content": "hi"}], temperature=float("nan"))
    with pytest.raises(BadRequestError, match="cannot be sent as JSON"):
        await router.complete([{"role": "user", "content": "hi", "sent_at": object()}])
    assert upstream.requests == []
    assert all(router.health.is_available(m) for m in ("a/x", "b/y"))  # no model blamed for the request


async def test_the_voice_llm_path_replaces_a_lone_surrogate_too(make_llm, upstream):  # noqa: F811
    or_llm: OpenRouterLLM = make_llm(["a/model"])
    upstream.script("a/model", Script(text="Understood."))
    chunks = await collect(or_llm.chat(chat_ctx=user_says("na\udcefve question")))
    text = "".join(c.delta.content for c in chunks if c.delta and c.delta.content)
    assert text == "Understood." and APOLOGY not in text
    assert upstream.requests[-1].messages[-1]["content"] == "na\ufffdve question"


async def test_an_endpoint_url_that_cannot_be_asked_is_that_models_failure(upstream, make_router):
    upstream.script("b/y", Script(text="Backup."))
    router = make_router(["a/x@broken", "b/y"], endpoints={"broken": ("http://[::1", None)})
    reply = await router.complete([{"role": "user", "content": "hi"}])
    assert reply.text == "Backup."
    assert "InvalidURL" in (reply.attempts[0].error or "")
