"""Named entities: token classification, grouped into character spans as the Hugging Face
transformers TokenClassificationPipeline's `aggregation_strategy` does.

- ``none``: every token the model labels other than "O", on its own (``entity``, ``index``);
- ``simple`` (the default): adjacent tokens of one type grouped, a B- tag starting a new
  entity; the score is the mean of the tokens' scores;
- ``first``, ``average``, ``max``: first each word gets one label (its first token's, the
  one with the highest mean probability over its tokens, or its most confident token's),
  then words are grouped as ``simple`` groups tokens. Words are told apart as transformers
  does: a token is a word's continuation when the tokenizer's text for it differs in length
  from the characters it covers (``##lace`` for "lace") in word-aware tokenizers (a
  ``continuing_subword_prefix``), else when no space precedes it. So a word never ends up
  split across two entities.

Every entity's ``word`` is the text's own characters between ``start`` and ``end`` (where
transformers decodes the tokens again, lower-cased by an uncased tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from app.runtimes.base import Head, ModelOutputs
from app.spec import TaskName
from app.tasks.base import Encoded, Task, softmax


class Aggregation(StrEnum):
    NONE = "none"
    SIMPLE = "simple"
    FIRST = "first"
    AVERAGE = "average"
    MAX = "max"


WORD_STRATEGIES = frozenset({Aggregation.FIRST, Aggregation.AVERAGE, Aggregation.MAX})


@dataclass(frozen=True)
class NERParams:
    aggregation_strategy: Aggregation = Aggregation.SIMPLE


@dataclass(frozen=True)
class Entity:
    entity_group: str
    score: float
    word: str
    start: int
    end: int


@dataclass(frozen=True)
class TokenEntity:
    """One token's label (aggregation_strategy "none"); `index` is the token's position in
    the model's input, special tokens counted."""

    entity: str
    score: float
    index: int
    word: str
    start: int
    end: int


def _split_tag(label: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'PER' -> ('I', 'PER'); 'O' -> ('O', '')."""
    if label == "O":
        return "O", ""
    if len(label) > 2 and label[1] in "-_" and label[0] in "BIES":
        return label[0], label[2:]
    return "I", label


@dataclass(frozen=True)
class TokenSpans:
    """What decoding an NER item needs: the text, each token's character span, and which
    tokens are special ([CLS], [SEP])."""

    text: str
    offsets: list[tuple[int, int]]
    special: list[int]


@dataclass(frozen=True)
class _Token:
    """A non-special token: its position, characters, label probabilities, and whether it
    continues the word before it."""

    index: int
    start: int
    end: int
    probs: np.ndarray
    continues_word: bool


@dataclass(frozen=True)
class _Labelled:
    """A token or a word with its label: what entities are grouped from."""

    label: str
    score: float
    start: int
    end: int


class NERTask(Task[str, NERParams | None, list[Entity] | list[TokenEntity]]):
    name = TaskName.NER
    head = Head.TOKEN_CLASSIFICATION
    needs_offsets = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = [str(self.config.id2label[i]) for i in range(self.config.num_labels)]
        # As transformers tells words apart: by the token's length where the tokenizer marks
        # continuations (WordPiece's "##"), else by the space before it.
        model = getattr(getattr(self.tokenizer, "backend_tokenizer", None), "model", None)
        self._word_aware = bool(getattr(model, "continuing_subword_prefix", None))
        self._unk_id = self.tokenizer.unk_token_id

    def encode(self, item: str, params: NERParams | None) -> Encoded:
        enc = self.tokenize(item, return_offsets_mapping=True, return_special_tokens_mask=True)
        return Encoded(
            rows=[self.row(enc)],
            context=TokenSpans(item, enc["offset_mapping"], enc["special_tokens_mask"]),
        )

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: NERParams | None
    ) -> list[Entity] | list[TokenEntity]:
        strategy = (params or NERParams()).aggregation_strategy
        spans = encoded.context_as(TokenSpans)
        n = len(spans.offsets)
        probs = softmax(outputs["logits"][0, :n].astype(np.float64))
        tokens = self._tokens(spans, encoded.rows[0]["input_ids"], probs, strategy)
        text = spans.text
        if strategy is Aggregation.NONE:
            labelled = ((t, int(t.probs.argmax())) for t in tokens)
            return [
                TokenEntity(
                    self.labels[best], float(t.probs[best]), t.index, text[t.start : t.end],
                    t.start, t.end,
                )
                for t, best in labelled
                if self.labels[best] != "O"
            ]  # fmt: skip
        if strategy is Aggregation.SIMPLE:
            pieces = [self._label(t.probs, t.start, t.end) for t in tokens if t.start != t.end]
        else:
            pieces = [self._word(word, strategy) for word in _words(tokens)]
        return _group(text, pieces)

    def _tokens(
        self, spans: TokenSpans, ids: list[int], probs: np.ndarray, strategy: Aggregation
    ) -> list[_Token]:
        """The non-special tokens, each told whether it continues a word (only the word
        strategies ask)."""
        text = spans.text
        strings = (
            self.tokenizer.convert_ids_to_tokens(ids[: len(spans.offsets)])
            if strategy in WORD_STRATEGIES and self._word_aware
            else None
        )
        tokens = []
        for index, ((start, end), special) in enumerate(
            zip(spans.offsets, spans.special, strict=True)
        ):
            if special:
                continue
            continues = False
            if strategy in WORD_STRATEGIES and ids[index] != self._unk_id:
                if strings is not None:
                    continues = len(strings[index]) != end - start
                else:
                    continues = start > 0 and " " not in text[start - 1 : start + 1]
            tokens.append(_Token(index, start, end, probs[index], continues))
        return tokens

    def _label(self, probs: np.ndarray, start: int, end: int) -> _Labelled:
        best = int(probs.argmax())
        return _Labelled(self.labels[best], float(probs[best]), start, end)

    def _word(self, tokens: list[_Token], strategy: Aggregation) -> _Labelled:
        """One label for a word's tokens."""
        if strategy is Aggregation.FIRST:
            probs = tokens[0].probs
        elif strategy is Aggregation.MAX:
            probs = max(tokens, key=lambda t: float(t.probs.max())).probs
        else:
            probs = np.nanmean(np.stack([t.probs for t in tokens]), axis=0)
        return self._label(probs, tokens[0].start, tokens[-1].end)

    def warmup_request(self) -> tuple[str, NERParams]:
        return "Ada Lovelace lived in London.", NERParams()

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "labels": self.labels}


def _words(tokens: list[_Token]) -> list[list[_Token]]:
    words: list[list[_Token]] = []
    for token in tokens:
        if words and token.continues_word:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _group(text: str, pieces: list[_Labelled]) -> list[Entity]:
    """Adjacent pieces of one type become one entity; a B- (or S-) tag starts a new one and
    "O" ends one. The score is the mean of the pieces' scores."""
    entities: list[Entity] = []
    run: list[_Labelled] = []
    kind = ""

    def close() -> None:
        if run:
            start, end = run[0].start, run[-1].end
            score = float(np.mean([piece.score for piece in run]))
            entities.append(Entity(kind, score, text[start:end], start, end))

    for piece in pieces:
        tag, piece_kind = _split_tag(piece.label)
        if tag == "O":
            close()
            run = []
            continue
        if not (run and piece_kind == kind and tag in ("I", "E")):
            close()
            run, kind = [], piece_kind
        run.append(piece)
    close()
    return entities
