"""The question in flight survives an STT failover (issue 20, item 1), and a Deepgram that answers
again serves the call again (item 7a): on real audio, through the worker's pipeline."""

from __future__ import annotations

from typing import Any

import pytest
from rapidfuzz import fuzz

from openrouter_voice.speech.replay import ReplayingFallbackAdapter
from openrouter_voice.testing import Script
from openrouter_voice.testing.deepgram import DeepgramScript
from tests.voice.conftest import speech

# heard word for word by the local STT, and its first words are lost when it hears from a switch on
QUESTION = "What is the weather like in Tokyo today?"
ANSWER = "Yes, I can hear you."
# the tests that judge only what was heard of the question: each turn ends when the answer has played out,
# and this one plays in 0.6 s (the one above in 1.5 s)
SHORT = "Yes."

FAULTS = [DeepgramScript(status=503), DeepgramScript(hang=True), DeepgramScript(silent=True),
          DeepgramScript(drop_after_speech=0.5)]
FAULT_IDS = ["refused", "handshake-hang", "silent-socket", "dropped-mid-utterance"]


def asked(upstream: Any) -> str:
    """What the model was asked last (the caller's transcribed words)."""
    return str(upstream.requests[-1].messages[-1]["content"]).lower() if upstream.requests else ""


def missed_words(question: str, heard: str) -> list[str]:
    """The words of ``question`` not found, in order, in ``heard`` (a word close enough counts:
    PocketSphinx sometimes mishears one)."""
    said = [w.strip(",.?!").lower() for w in question.split()]
    got = heard.lower().split()
    missed, at = [], 0
    for word in said:
        match = next((k for k in range(at, len(got)) if fuzz.ratio(word, got[k]) >= 70), None)
        if match is None:
            missed.append(word)
        else:
            at = match + 1
    return missed


def heard_whole(question: str, upstream: Any) -> bool:
    """The model was asked the whole question: at most one word of it misheard."""
    return len(missed_words(question, asked(upstream))) <= 1


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
async def test_the_first_question_of_the_call_is_answered_whatever_deepgram_does(call, upstream, deepgram, fault):
    deepgram.script(fault)
    upstream.script("a/model", Script(text=ANSWER))
    voice = await call(["a/model"], deepgram=deepgram)
    turn = await voice.say(await speech(QUESTION))
    assert turn.answer == ANSWER, "the question was lost: the caller would have to repeat it"
    assert heard_whole(QUESTION, upstream), asked(upstream)
    assert turn.audio.loud_seconds() > 0.5 and not voice.closed


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
async def test_a_later_question_is_answered_whatever_deepgram_does(call, upstream, deepgram, fault):
    upstream.script("a/model", Script(text=SHORT))
    voice = await call(["a/model"], deepgram=deepgram)
    first = await voice.say(await speech("Hello, can you hear me?"))
    assert first.answer == SHORT and deepgram.connections[0].utterances  # Deepgram served it
    # broken now (the open socket too), and every new connection is refused
    deepgram.script([fault, DeepgramScript(status=503)])
    turn = await voice.say(await speech(QUESTION))
    assert turn.answer == SHORT, "the question was lost: the caller would have to repeat it"
    assert heard_whole(QUESTION, upstream), asked(upstream)
    assert "hear" not in asked(upstream)  # the first question was not heard twice
    assert len(upstream.requests) == 2 and not voice.closed


async def test_deepgram_takes_over_again_once_it_answers(call, upstream, deepgram):
    upstream.script("a/model", Script(text=SHORT))
    voice = await call(["a/model"], deepgram=deepgram)
    changes: list[tuple[str, bool]] = []
    voice.session.stt.on("stt_availability_changed", lambda ev: changes.append((ev.stt.provider.lower(), ev.available)))
    deepgram.script([DeepgramScript(drop_after_speech=0.5), DeepgramScript(status=503)])
    dropped = await voice.say(await speech(QUESTION))
    assert dropped.answer == SHORT and changes == [("deepgram", False)]
    deepgram.script(DeepgramScript())  # Deepgram is back
    recovering = await voice.say(await speech(QUESTION))  # its probe hears this one
    assert recovering.answer == SHORT and changes == [("deepgram", False), ("deepgram", True)]
    served_before = sum(len(c.utterances) for c in deepgram.connections)
    later = await voice.say(await speech("Hello, can you hear me?"))
    assert later.answer == SHORT and "hear me" in asked(upstream)
    assert voice.session.stt._active_instance.provider.lower() == "deepgram"  # it served the later turn
    assert sum(len(c.utterances) for c in deepgram.connections) == served_before + 1


async def test_a_hung_handshake_on_the_first_question_costs_little_more_than_a_healthy_turn(call, upstream,
                                                                                            deepgram):
    """The local STT hears the first question alongside the pending handshake and its transcript is used
    as soon as it has one: the caller does not wait for the handshake's timeout, and the question is
    answered once."""
    upstream.script("a/model", Script(text=SHORT))
    short = "Hello, can you hear me?"  # too short for the watchdog's 2 s of unanswered speech
    question = await speech(short)
    healthy_call = await call(["a/model"], deepgram=deepgram)
    healthy = await healthy_call.say(question)
    assert healthy.answer == SHORT and healthy.ttfa is not None and deepgram.connections[0].utterances

    deepgram.script(DeepgramScript(hang=True))
    voice = await call(["a/model"], deepgram=deepgram)
    changes: list[tuple[str, bool]] = []
    voice.session.stt.on("stt_availability_changed", lambda ev: changes.append((ev.stt.provider.lower(), ev.available)))
    turn = await voice.say(question)
    assert turn.answer == SHORT and turn.ttfa is not None, "the question was lost"
    assert heard_whole(short, upstream), asked(upstream)
    assert len(upstream.requests) == 2  # one answer for the one question: never two final transcripts
    assert changes == [("deepgram", False)]
    print(f"healthy TTFA {healthy.ttfa:.2f} s, hung Deepgram handshake {turn.ttfa:.2f} s; question taken "
          f"{turn.stages()['eou_delay']:.2f} s after its end (healthy {healthy.stages()['eou_delay']:.2f} s)")
    # taken from the local STT heard alongside, as soon as it had the question (or at the handshake's timeout if
    # that came first): not transcribed again from the replay after it; the watchdog's 1.2 s after the question
    # is not waited for (1.7-2.1 s in all before, against 0.6 s). On a machine this loaded the local STT's own
    # time varies 0.6-2 s from one turn to the next, so the path taken is the oracle, and the time is held to
    # the target with a margin
    assert isinstance(voice.session.stt, ReplayingFallbackAdapter) and voice.session.stt.adopted == 1
    assert turn.ttfa <= 1.5 * healthy.ttfa + 1.0  # the target, healthy + 1 s, with a margin
