"""A generated sequence's text, token by token: what may be sent so far, and stop sequences.

Tokens are not characters: a byte-level BPE token may hold half a UTF-8 character, and a
SentencePiece token's leading space depends on the token before it. So each new token's text
is the difference between decoding a short window of tokens with and without it, released
only once it no longer ends in an incomplete character (the approach of vLLM's and TGI's
incremental detokenizers). Text that could still turn out to be the start of a stop sequence
is held back until it cannot, so a stream never sends what the finished text leaves out.
"""

from __future__ import annotations

from typing import Any

# Prompt tokens decoded before the first generated one, so its leading space comes out as the
# tokenizer would write it after the prompt.
CONTEXT_TOKENS = 4
REPLACEMENT = "\ufffd"


class TextStream:
    def __init__(self, tokenizer: Any, prompt: list[int], stop: tuple[str, ...]) -> None:
        self._tokenizer = tokenizer
        self._ids = list(prompt[-CONTEXT_TOKENS:])
        self._prefix = 0  # window start
        self._read = len(self._ids)  # tokens already turned into text
        self._stop = stop
        self._hold = max((len(s) for s in stop), default=1) - 1
        self.text = ""  # the text so far (cut at a stop sequence once one appears)
        self._sent = 0  # characters of text already released
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def push(self, token: int) -> None:
        """Add a generated token; `stopped` turns true when the text reaches a stop sequence
        (the text then ends before it)."""
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith(REPLACEMENT):
            return  # no whole new character yet
        start = max(0, len(self.text) - self._hold)
        self.text += after[len(before) :]
        self._prefix, self._read = self._read, len(self._ids)
        if self._stop:
            self._cut_at_stop(start)

    def _cut_at_stop(self, start: int) -> None:
        found = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.stopped = True

    def release(self, finished: bool) -> str:
        """The text not sent yet that can be sent now: all of it once finished, else all but
        what might still begin a stop sequence."""
        end = len(self.text) if finished or self.stopped else len(self.text) - self._hold
        if end <= self._sent:
            return ""
        delta = self.text[self._sent : end]
        self._sent = end
        return delta

    def token_text(self, token: int) -> str:
        """One token's own text (logprobs name tokens by it)."""
        return self._decode([token])
