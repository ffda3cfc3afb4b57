"""rerank: how relevant each document is to a query, from a cross-encoder.

A cross-encoder is a sequence-classification head reading the query and one document together
(ms-marco MiniLM cross-encoders, bge-reranker). One request item is one (query, document)
pair, so a request with 100 documents is 100 items of the batcher, batched by tokens like any
other task's. A document longer than the model's window is scored in overlapping windows
(catalog `options.doc_stride` tokens of overlap) and its best window counts; the result says
how many windows were scored. A document is cut only when the request asks for it
(`max_doc_tokens`, `fit_window`, `max_windows`), and then only the document side, and the
result says so.

Scores: the sigmoid of a one-logit head; for heads of two or more logits the softmax
probability of the positive label (config id2label, or catalog `options.positive_label`). With
`raw_scores` the score is the logit whose sigmoid that is (one logit: the logit itself; more:
the positive logit minus the log-sum-exp of the others), so raw and normalised scores rank
alike. The semantic method (app/tasks/semantic.py, SemanticRerankTask) shares the windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.errors import ModelLoadError, QueryTooLong
from app.runtimes.base import Head, ModelOutputs
from app.spec import RerankOptions, TaskName
from app.tasks.base import ENCODING_FIELDS, Encoded, Row, Task

TruncationDirection = Literal["right", "left"]
# Label names (lower case) read as "relevant" in a two-logit head's config.
POSITIVE_NAMES = frozenset({"relevant", "positive", "pos", "yes", "true", "1"})


@dataclass(frozen=True)
class RerankItem:
    """One document to score against the query: one item of the batcher."""

    query: str
    document: str


@dataclass(frozen=True)
class RerankParams:
    top_n: int | None = None  # results kept, best first; None: every document
    raw_scores: bool = False  # the logit (semantic: the cosine) instead of a 0-1 score
    # Cuts the client asked for, of the document only (never of the query):
    max_doc_tokens: int | None = None  # at most this many of its tokens (Cohere, Jina)
    fit_window: bool = False  # what fits one window with the query (TEI `truncate`)
    truncation_direction: TruncationDirection = "right"  # right keeps the start, left the end
    max_windows: int | None = None  # score at most this many windows (Cohere max_chunks_per_doc)


@dataclass(frozen=True)
class DocumentScore:
    """One document's relevance: its best window's score, how many windows were scored,
    whether it was cut at the request's asking, and the tokens the model read for it."""

    score: float
    windows: int
    truncated: bool
    tokens: int


@dataclass(frozen=True)
class RankedDocument:
    """A document's place in the answer: `index` is its position in the request."""

    index: int
    score: float
    windows: int
    truncated: bool


def rank(scores: Sequence[DocumentScore], top_n: int | None) -> list[RankedDocument]:
    """The documents best first (ties keep request order), at most top_n."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i].score, i))[:top_n]
    return [
        RankedDocument(i, scores[i].score, scores[i].windows, scores[i].truncated) for i in order
    ]


def piece_encoder(task: Task[Any, Any, Any]) -> Any:
    """A copy of the fast tokenizer's Rust core that adds no special tokens and cuts nothing:
    the query and the document are tokenized apart, the document cut into windows, and each
    window put together with the query by the tokenizer's own template (post_process)."""
    backend = getattr(task.tokenizer, "backend_tokenizer", None)
    if backend is None or not set(task.model_inputs) <= set(ENCODING_FIELDS):
        raise ModelLoadError(
            f"model {task.spec.name!r}: task rerank needs a fast (Rust) tokenizer taking "
            f"{sorted(ENCODING_FIELDS)} to cut long documents into windows; {task.model_dir} "
            f"has {type(task.tokenizer).__name__} taking {list(task.model_inputs)}. Save "
            "tokenizer.json with the model."
        )
    from tokenizers import Tokenizer

    encoder = Tokenizer.from_str(backend.to_str())
    encoder.no_padding()
    encoder.no_truncation()
    return encoder


def check_template(task: Task[Any, Any, Any], pieces: Any, pair: bool) -> None:
    """The windows are put together by the Rust tokenizer's template: refuse a tokenizer whose
    own call adds what that template does not (special tokens added in Python)."""
    texts = ("what is checked", "a document is checked") if pair else ("what is checked",)
    expected = task.tokenizer(*texts)
    parts = [pieces.encode(text, add_special_tokens=False) for text in texts]
    ours = encoding_row(pieces.post_process(*parts), task.model_inputs)
    if any(list(expected[key]) != ours[key] for key in task.model_inputs if key in expected):
        raise ModelLoadError(
            f"model {task.spec.name!r}: its tokenizer's own call and its tokenizer.json template "
            "put special tokens differently, so documents cannot be cut into windows the way "
            "the model reads them; task rerank needs a tokenizer whose tokenizer.json adds them"
        )


def encoding_row(encoding: Any, inputs: Sequence[str]) -> Row:
    """A tokenizers Encoding as the model's row."""
    return {key: getattr(encoding, ENCODING_FIELDS[key]) for key in inputs}


def document_windows(
    document: Any, room: int, overlap: int, params: RerankParams
) -> tuple[list[Any], bool]:
    """The document's token windows of at most `room` tokens, `overlap` tokens shared by
    neighbours (at most half a window), after the cuts the request asked for; and whether it
    was cut. `document` is an Encoding without special tokens (truncated in place)."""
    truncated = False
    limit = room if params.fit_window else None
    if params.max_doc_tokens is not None:
        limit = params.max_doc_tokens if limit is None else min(limit, params.max_doc_tokens)
    if limit is not None and len(document.ids) > limit:
        document.truncate(limit, direction=params.truncation_direction)
        truncated = True
    if len(document.ids) <= room:  # a cut's removed part stays in .overflowing: not a window
        return [document], truncated
    document.truncate(room, stride=min(overlap, room // 2))
    windows = [document, *document.overflowing]
    if params.max_windows is not None and len(windows) > params.max_windows:
        windows, truncated = windows[: params.max_windows], True
    return windows, truncated


def logistic(x: float) -> float:
    """The sigmoid of one number, without overflow at either end."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def query_too_long(name: str, tokens: int, limit: int) -> QueryTooLong:
    return QueryTooLong(
        f"the query has {tokens} tokens and leaves no room for the document: model {name!r} "
        f"reads at most {limit} tokens at once (query, document window and special tokens "
        "together); shorten the query"
    )


def relevance_logits(logits: np.ndarray, positive: int | None) -> np.ndarray:
    """Per row, the logit whose sigmoid is the relevance probability: a one-logit head's own,
    else the positive class's log-odds against the others (sigmoid of it = its softmax)."""
    if positive is None:
        return logits[:, 0]
    others = np.delete(logits, positive, axis=1)
    top = others.max(axis=1)
    rest = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    out: np.ndarray = logits[:, positive] - rest
    return out


def positive_class(config: Any, asked: str | None, name: str) -> tuple[int | None, str]:
    """(the positive label's index, None for a one-logit head; what the score is)."""
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    if asked is not None:
        if asked not in labels:
            raise ModelLoadError(
                f"model {name!r}: options.positive_label {asked!r} is not one of its labels "
                f"{labels}"
            )
        index = labels.index(asked)
    elif len(labels) == 1:
        return None, "sigmoid of the head's one logit"
    elif len(labels) == 2:
        named = [i for i, label in enumerate(labels) if label.lower() in POSITIVE_NAMES]
        index = named[0] if len(named) == 1 else 1
    else:
        raise ModelLoadError(
            f"model {name!r} has {len(labels)} labels {labels}: name the one whose probability "
            "is the relevance score in the catalog entry's options.positive_label"
        )
    return index, f"softmax probability of label {labels[index]!r} (index {index})"


def example_documents(fields: Mapping[str, Any]) -> tuple[str, list[str]]:
    """A labelled example's query and documents (a calibration text: its question and its
    context)."""
    if "query" in fields:
        return str(fields["query"]), [str(d) for d in fields["documents"]]
    return str(fields["question"]), [str(fields["context"])]


def same_best(reference: Sequence[DocumentScore], candidate: Sequence[DocumentScore]) -> float:
    """Two engines agree on a query when the same document ranks first."""
    if not reference:
        return 1.0
    return float(rank(reference, 1)[0].index == rank(candidate, 1)[0].index)


class RerankProbes:
    """What every rerank method answers the same: its warm-up request, and how `auto` probes
    it (one labelled query's documents, compared on which ranks first)."""

    def warmup_request(self) -> tuple[RerankItem, RerankParams]:
        return RerankItem("warm-up query", "A warm-up document."), RerankParams()

    def example_request(self, fields: Mapping[str, Any]) -> tuple[RerankItem, RerankParams]:
        query, documents = example_documents(fields)
        return RerankItem(query, documents[0]), RerankParams()

    def example_requests(self, fields: Mapping[str, Any]) -> list[tuple[RerankItem, RerankParams]]:
        query, documents = example_documents(fields)
        return [(RerankItem(query, document), RerankParams()) for document in documents]

    def probe_agreement(
        self, reference: Sequence[DocumentScore], candidate: Sequence[DocumentScore]
    ) -> float:
        return same_best(reference, candidate)


class RerankTask(RerankProbes, Task[RerankItem, RerankParams, DocumentScore]):
    name = TaskName.RERANK
    head = Head.SEQUENCE_CLASSIFICATION
    method = "cross-encoder"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.doc_stride = self.spec.options_as(RerankOptions).doc_stride
        self.pieces = piece_encoder(self)
        check_template(self, self.pieces, pair=True)
        self.specials = int(self.pieces.num_special_tokens_to_add(True))
        asked = self.spec.options_as(RerankOptions).positive_label
        self.positive, self.scoring = positive_class(self.config, asked, self.spec.name)

    def encode(self, item: RerankItem, params: RerankParams) -> Encoded:
        query = self.pieces.encode(item.query, add_special_tokens=False)
        room = self.max_length - self.specials - len(query.ids)
        if room < 1:
            raise query_too_long(self.spec.name, len(query.ids), self.max_length)
        document = self.pieces.encode(item.document, add_special_tokens=False)
        windows, truncated = document_windows(document, room, self.doc_stride, params)
        rows = [
            encoding_row(self.pieces.post_process(query, window), self.model_inputs)
            for window in windows
        ]
        return Encoded(rows=rows, truncated=truncated)

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: RerankParams
    ) -> DocumentScore:
        logits = relevance_logits(outputs["logits"].astype(np.float64), self.positive)
        best = float(logits.max())
        return DocumentScore(
            score=best if params.raw_scores else logistic(best),
            windows=len(encoded.rows),
            truncated=encoded.truncated,
            tokens=sum(len(row["input_ids"]) for row in encoded.rows),
        )

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "score": self.scoring, "doc_stride": self.doc_stride}
