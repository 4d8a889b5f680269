"""Deepgram or Cartesia failing, from the start or mid-call: the caller is still heard and answered
aloud (by the local engines), and the session stays up."""

from __future__ import annotations

import dataclasses

import pytest
from rapidfuzz import fuzz

from openrouter_voice.testing import Script
from openrouter_voice.testing.cartesia import CartesiaScript
from openrouter_voice.testing.deepgram import DeepgramScript
from tests.voice.conftest import speech

ANSWER = "Yes, I can hear you."  # about 1.4 s spoken, 0.7 to 0.9 s of it above silence (Piper varies)
QUESTION = "Hello, can you hear me?"


async def answered(voice, *, tries: int = 2):
    """Ask until answered (a caller repeats a question the line swallowed); the answering turn, with
    what was heard over every try (on a loaded machine the answer to one try may come in the next)."""
    heard = []
    for _ in range(tries):
        turn = await voice.say(await speech(QUESTION), wait=7.0)  # a healthy answer starts within ~3 s
        heard.append(turn.heard)
        if turn.answer:
            break
    return dataclasses.replace(turn, heard=" ".join(h for h in heard if h))


@pytest.mark.parametrize("fault", [DeepgramScript(status=401), DeepgramScript(status=503),
                                   DeepgramScript(hang=True)], ids=["401", "503", "handshake-hang"])
async def test_deepgram_refusing_from_the_start_leaves_the_caller_heard(call, upstream, deepgram, fault):
    deepgram.script(fault)
    upstream.script("a/model", Script(text=ANSWER))
    voice = await call(["a/model"], deepgram=deepgram)
    turn = await voice.say(await speech(QUESTION))  # answered in that turn: the question is replayed
    # by the local STT, the whole question (PocketSphinx may mishear a word of it, as below)
    assert fuzz.partial_ratio("can you hear me", turn.heard) >= 80, turn.heard
    assert turn.answer == ANSWER and turn.audio.loud_seconds() > 0.5
    assert deepgram.handshakes >= 1 and deepgram.auth[0] == "Token dg-test-key"
    assert not voice.closed


@pytest.mark.parametrize("fault", [DeepgramScript(drop_after_speech=0.2), DeepgramScript(silent=True),
                                   DeepgramScript(first_result_delay=4.0)], ids=["dropped", "silent", "slow"])
async def test_deepgram_failing_mid_call_leaves_the_caller_heard(call, upstream, deepgram, fault):
    upstream.script("a/model", Script(text=ANSWER))
    voice = await call(["a/model"], deepgram=deepgram)
    first = await voice.say(await speech(QUESTION))
    # Deepgram served the first turn (its words are PocketSphinx's here, which may mishear a word)
    assert fuzz.partial_ratio("can you hear me", first.heard) >= 80, first.heard
    assert first.answer == ANSWER
    assert deepgram.connections[0].utterances and deepgram.connections[0].audio_seconds > 1
    deepgram.script([fault, DeepgramScript(status=503)])  # broken now, and refuses reconnections
    turn = await voice.say(await speech(QUESTION))  # answered in that turn: the question is replayed
    assert turn.answer == ANSWER and turn.audio.loud_seconds() > 0.5
    assert not voice.closed


@pytest.mark.parametrize("fault", [CartesiaScript(status=401), CartesiaScript(status=500), CartesiaScript(hang=True)],
                         ids=["401", "500", "handshake-hang"])
async def test_cartesia_refusing_is_covered_by_the_local_voice_on_every_turn(call, upstream, cartesia, fault):
    cartesia.script(fault)
    upstream.script("a/model", Script(text=ANSWER))
    voice = await call(["a/model"], cartesia=cartesia)
    turn = await voice.say(await speech(QUESTION))
    assert turn.answer == ANSWER and turn.audio.loud_seconds() > 0.5
    assert cartesia.chunks_sent == 0  # every sound came from the local voice
    assert not voice.closed


@pytest.mark.parametrize("fault", [CartesiaScript(drop_after_chunks=2), CartesiaScript(silent=True),
                                   CartesiaScript(error="internal")], ids=["dropped", "silent", "error"])
async def test_cartesia_failing_mid_call_leaves_the_caller_answered(call, upstream, cartesia, fault):
    upstream.script("a/model", Script(text=ANSWER))
    voice = await call(["a/model"], cartesia=cartesia)
    first = await voice.say(await speech(QUESTION))
    assert first.answer == ANSWER and cartesia.chunks_sent > 0  # Cartesia spoke the first answer
    cartesia.script([fault, CartesiaScript(status=503)])
    broken = await voice.say(await speech(QUESTION))
    assert broken.answer == ANSWER and broken.audio.loud_seconds() > 0.1  # some of it, at least, was heard
    after = await voice.say(await speech(QUESTION))
    assert after.answer == ANSWER and after.audio.loud_seconds() > 0.5  # the local voice, whole
    assert not voice.closed
