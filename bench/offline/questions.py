"""Forty everyday questions a newcomer asks the offline voice agent, each with what counts as a good answer.

Kinds: greetings and small talk, simple facts, simple arithmetic (answered correctly), and questions
that need live data or that nobody could know (answered honestly: "I'm not sure", "I can't look that
up", never an invented figure). None of them is among the local prompt's worked examples.

>>> QUESTIONS[0].judge("Hello! How can I help you today?")
True
>>> by_text("What is two plus two?").judge("2 + 1 = 3.")
False
>>> by_text("What is the stock price of Apple?").judge("It is $10.83 a share.")
False
>>> by_text("What is the stock price of Apple?").judge("I'm not sure; I can't look that up right now.")
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HONEST = re.compile(
    r"\b(not sure|don['’]?t know|do not know|no idea|can['’]?t|cannot|can not|unable|unavailable|not able|"
    r"no way (of|to) know\w*|no access)\b", re.IGNORECASE)
"""An answer that admits it does not know or cannot look it up."""
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\b(?:" + "|".join(_NUMBER_WORDS) + r"|twenty[- ]five)\b", re.IGNORECASE)


def _value(token: str) -> float:
    token = token.lower().replace("-", " ")
    if token == "twenty five":
        return 25.0
    return float(token) if token[0].isdigit() else float(_NUMBER_WORDS.index(token))


@dataclass(frozen=True)
class Question:
    """One question and its oracle.

    ``kind``: "greeting", "fact", "arithmetic", "live" (needs a lookup) or "unknowable".
    ``accept``: for greetings and facts, a pattern a correct answer contains; for arithmetic the
    expected number (the last number in the answer must be it: "2 + 1 = 3" is wrong, "2 + 2 = 4" right).
    Live and unknowable questions are answered honestly (:data:`HONEST`) and name no number.
    """

    text: str
    kind: str
    accept: str = ""

    def judge(self, answer: str) -> bool:
        """Whether ``answer`` is correct (greeting, fact, arithmetic) or honest (live, unknowable)."""
        answer = answer.strip()
        if not answer:
            return False
        if self.kind in ("live", "unknowable"):
            return bool(HONEST.search(answer)) and not re.search(r"\d", answer)
        if self.kind == "arithmetic":
            numbers = _NUMBER.findall(answer)
            return bool(numbers) and _value(numbers[-1]) == float(self.accept)
        return bool(re.search(self.accept, answer, re.IGNORECASE))


QUESTIONS: tuple[Question, ...] = (
    # greetings and small talk
    Question("Hello!", "greeting", r"\b(hello|hi|hey|good (morning|afternoon|evening|day))\b"),
    Question("Good morning.", "greeting", r"\b(good morning|morning|hello|hi)\b"),
    Question("How are you?", "greeting", r"\b(good|fine|well|great|doing)\b"),
    Question("Thank you so much!", "greeting", r"\b(welcome|pleasure|glad|no problem|anytime)\b"),
    Question("Goodbye.", "greeting", r"\b(bye|goodbye|see you|take care|talk soon)\b"),
    Question("Can you hear me?", "greeting", r"\b(yes|hear you)\b"),
    Question("Who are you?", "greeting", r"\bassistant\b"),
    # simple facts
    Question("What is the capital of France?", "fact", r"\bParis\b"),
    Question("What is the capital of Japan?", "fact", r"\bTokyo\b"),
    Question("How many days are in a week?", "fact", r"\b(seven|7)\b"),
    Question("What color is the sky on a clear day?", "fact", r"\bblue\b"),
    Question("How many legs does a spider have?", "fact", r"\b(eight|8)\b"),
    Question("What is the largest planet in our solar system?", "fact", r"\bJupiter\b"),
    Question("Who wrote Romeo and Juliet?", "fact", r"\bShakespeare\b"),
    Question("At what temperature does water boil in Celsius?", "fact", r"\b(100|one hundred|a hundred)\b"),
    Question("How many months are in a year?", "fact", r"\b(twelve|12)\b"),
    Question("What do bees make?", "fact", r"\bhoney\b"),
    Question("What is the opposite of hot?", "fact", r"\bcold\b"),
    Question("What language do people speak in Spain?", "fact", r"\bSpanish\b"),
    # simple arithmetic
    Question("What is two plus two?", "arithmetic", "4"),
    Question("What is 5 plus 3?", "arithmetic", "8"),
    Question("What is ten minus four?", "arithmetic", "6"),
    Question("What is 3 times 3?", "arithmetic", "9"),
    Question("What is half of ten?", "arithmetic", "5"),
    Question("What is 7 plus 6?", "arithmetic", "13"),
    Question("What is 100 divided by 4?", "arithmetic", "25"),
    # live data: only a lookup could answer
    Question("What's the weather like in Paris right now?", "live"),
    Question("Will it rain in London tomorrow?", "live"),
    Question("What's the latest news headline?", "live"),
    Question("What is the stock price of Apple?", "live"),
    Question("How is the stock market doing today?", "live"),
    Question("What time is it?", "live"),
    Question("What's today's date?", "live"),
    Question("Who won the football game last night?", "live"),
    Question("What's the score of the Lakers game?", "live"),
    Question("What's the exchange rate from dollars to euros?", "live"),
    Question("How much is one bitcoin worth right now?", "live"),
    # nobody could know
    Question("What's my name?", "unknowable"),
    Question("Where did I leave my keys?", "unknowable"),
    Question("What number am I thinking of?", "unknowable"),
)


def by_text(text: str) -> Question:
    """The question whose text is ``text``."""
    return next(q for q in QUESTIONS if q.text == text)
