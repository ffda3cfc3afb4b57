"""Splitting text into sentences, keeping character offsets into the original text."""

from __future__ import annotations

import re

# A sentence ends at . ! ? or ; (optionally followed by closing quotes or brackets) before
# whitespace, or at a line break. Abbreviations such as "e.g." may split early: harmless for
# extractive answers, which are whole spans of the original text either way.
_BOUNDARY = re.compile(r"(?<=[.!?;])[\"')\]]*\s+|\n\s*")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-empty sentence, stripped of surrounding whitespace."""
    spans = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    out = []
    for begin, end in spans:
        while begin < end and text[begin].isspace():
            begin += 1
        while end > begin and text[end - 1].isspace():
            end -= 1
        if begin < end:
            out.append((begin, end))
    return out
