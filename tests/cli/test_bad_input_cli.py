"""The CLI with bad input: hostile catalogs, undecodable or huge stdin, impossible options.

A clear answer or a clear error naming the problem; never a traceback, never "the language models are
unreachable" for what is an input problem.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from openrouter_voice.cli.chat import MAX_QUESTION_CHARS
from openrouter_voice.cli.main import app
from openrouter_voice.testing import Script, default_catalog
from tests.cli.test_chat import KEY, chat, env, up  # noqa: F401 (fixtures)


def hostile_catalog() -> list[dict]:
    models = default_catalog()
    models[1]["context_length"] = float("inf")  # google/gemini-2.5-flash: sent as Infinity
    models[3]["pricing"]["prompt"] = "NaN"  # openai/gpt-4.1-mini
    models[4]["context_length"] = 10**400  # anthropic/claude-3.5-haiku
    return models


def test_models_with_a_hostile_catalog_lists_the_sane_entries(env, up):  # noqa: F811
    env.setenv("COLUMNS", "200")
    up.set_catalog(hostile_catalog())
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "google/gemini-2.5-flash-lite" in result.stdout and "openai/gpt-4o-mini" in result.stdout
    for skipped in ("google/gemini-2.5-flash ", "openai/gpt-4.1-mini", "anthropic/claude-3.5-haiku"):
        assert skipped not in result.stdout
    assert result.exception is None


def test_chat_with_a_hostile_catalog_still_answers(env, up):  # noqa: F811
    up.set_catalog(hostile_catalog())
    up.script("google/gemini-2.5-flash-lite", Script(text="Still here."))
    result = chat("Hi")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Still here."


def test_binary_stdin_is_answered_from_its_readable_text(env, up):  # noqa: F811
    up.script("google/gemini-2.5-flash-lite", Script(text="Sunny."))
    result = CliRunner().invoke(app, ["chat"], input=b"What's \xff\xfe the \x00weather?\x1b\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Sunny."
    assert up.requests[-1].messages[-1] == {"role": "user", "content": "What's \ufffd\ufffd the weather?"}
    assert "trouble reaching" not in result.output


def test_a_lone_surrogate_in_the_question_never_reaches_the_wire(env, up):  # noqa: F811
    up.script("google/gemini-2.5-flash-lite", Script(text="Fine."))
    result = chat("caf\udce9?")
    assert result.exit_code == 0, result.output
    assert up.requests[-1].messages[-1]["content"] == "caf\ufffd?"


def test_a_ten_megabyte_line_is_cut_with_a_message(env, up):  # noqa: F811
    up.script("google/gemini-2.5-flash-lite", Script(text="That was long."))
    result = CliRunner().invoke(app, ["chat"], input=b"x" * 10_000_000 + b"\n")
    assert result.exit_code == 0, result.output
    assert len(up.requests[-1].messages[-1]["content"]) == MAX_QUESTION_CHARS
    assert "longer than 80,000 bytes" in result.stderr


def test_model_on_an_unknown_endpoint_exits_2_naming_it(env):  # noqa: F811
    result = chat("Hi", "--model", "foo@nowhere")
    assert result.exit_code == 2, result.output
    assert "nowhere" in result.stderr and "OPENROUTER_VOICE_ENDPOINTS" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(("args", "named"), [(["--limit", "-5"], "--limit"), (["--max-price", "nan"], "--max-price"),
                                             (["--max-price", "-1"], "--max-price"),
                                             (["--min-context", "-3"], "--min-context")])
def test_impossible_models_options_are_rejected(env, args, named):  # noqa: F811
    result = CliRunner().invoke(app, ["models", *args])
    assert result.exit_code == 2
    assert named in result.output
