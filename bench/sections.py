"""BENCHMARKS.md holds one section per benchmark between its own markers; each run replaces its own."""

from __future__ import annotations

from pathlib import Path


def replace_section(target: Path, begin: str, end: str, section: str) -> None:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) in place of the one between
    those markers in ``target``, or append it.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "B.md"
    >>> replace_section(path, "<b>", "<e>", "<b>one<e>\\n")
    >>> replace_section(path, "<b>", "<e>", "<b>two<e>\\n"); path.read_text()
    '\\n\\n<b>two<e>\\n'
    """
    text = target.read_text() if target.exists() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    target.write_text(text)
