"""The false cut-off set: questions spoken with a natural mid-sentence pause (300-900 ms), and the same
questions without it, made at run time by the local voice with inserted silence. A false cut-off is an
answer that starts before the caller has finished the question (during the pause, or over its end).

>>> len(QUESTIONS) >= 40 and all(len(q) == 2 for q in QUESTIONS)
True
>>> pauses(3) == pauses(3) and all(0.3 <= p <= 0.9 for p in pauses(40))
True
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from openrouter_voice.call.audio import FRAME, LOUD_RMS, Audio

# (before the pause, after it): where a caller naturally stops to think
QUESTIONS: list[tuple[str, str]] = [
    ("What's the weather in", "Paris today?"), ("Switch to", "Gemini Flash please."),
    ("Can you remind me to", "call my mother tomorrow?"), ("How long does it take to", "boil an egg?"),
    ("What is the capital of", "Australia?"), ("Tell me a joke about", "penguins."),
    ("I would like a table for", "four people tonight."), ("Could you explain how", "solar panels work?"),
    ("What time is it in", "Tokyo right now?"), ("Please set a timer for", "ten minutes."),
    ("How far is it from", "London to Edinburgh?"), ("Who wrote the novel", "Pride and Prejudice?"),
    ("Translate good morning into", "Spanish please."), ("What's a good recipe for", "banana bread?"),
    ("Is it going to rain in", "Berlin this weekend?"), ("How many ounces are in", "a pound?"),
    ("Play some music by", "the Beatles."), ("What should I wear for", "a job interview?"),
    ("Can you spell the word", "necessary for me?"), ("When does the sun set in", "Madrid today?"),
    ("What's the difference between", "a crocodile and an alligator?"),
    ("Send a message to", "David saying I'm late."), ("How do I reset my", "router password?"),
    ("What is the population of", "Canada?"), ("Find me a flight to", "New York on Friday."),
    ("How many calories are in", "an apple?"), ("Why is the sky", "blue during the day?"),
    ("What are the opening hours of", "the Louvre?"), ("Tell me the news about", "the stock market."),
    ("How do you say thank you in", "Japanese?"), ("What's the best way to", "learn the guitar?"),
    ("Add milk and eggs to", "my shopping list."), ("Who won the last", "football World Cup?"),
    ("What is the square root of", "one hundred and forty four?"),
    ("Recommend a book about", "ancient Rome."), ("How hot is the surface of", "the sun?"),
    ("Turn the lights off in", "the living room."), ("What's the exchange rate for", "euros to dollars?"),
    ("How do I get to", "the nearest train station?"), ("Can you summarise the plot of", "Hamlet for me?"),
    ("What is the tallest mountain in", "Africa?"), ("Book a taxi to", "the airport at six."),
]


def pauses(n: int, seed: int = 22) -> list[float]:
    """One pause per question, 300-900 ms, drawn with a fixed seed."""
    rng = random.Random(seed)
    return [round(rng.uniform(0.3, 0.9), 2) for _ in range(n)]


def trim(audio: Audio) -> Audio:
    """``audio`` without its leading and trailing silence (20 ms windows), so inserted pauses are exact."""
    window = max(1, int(audio.rate * FRAME))
    loud = [i for i in range(0, len(audio.samples), window)
            if np.sqrt(np.mean(audio.samples[i:i + window].astype(np.float64) ** 2)) > LOUD_RMS]
    if not loud:
        return audio
    return Audio(audio.samples[loud[0]:loud[-1] + window], audio.rate)


async def spoken(tts: Any, text: str) -> Audio:
    return Audio(await tts.pcm(text), tts.sample_rate)


async def paused(tts: Any, question: tuple[str, str], pause: float) -> Audio:
    """The question said in two parts with ``pause`` seconds of silence between (plus a short tail)."""
    first, second = trim(await spoken(tts, question[0])), trim(await spoken(tts, question[1]))
    gap = np.zeros(int(pause * first.rate), dtype=np.int16)
    tail = np.zeros(int(0.2 * first.rate), dtype=np.int16)
    return Audio(np.concatenate([first.samples, gap, second.samples, tail]), first.rate)


async def whole(tts: Any, question: tuple[str, str]) -> Audio:
    """The question said in one go, as the local voice says it."""
    return await spoken(tts, f"{question[0]} {question[1]}")
