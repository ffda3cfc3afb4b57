"""The "semantic" method family: zero-shot and extractive answers from a sentence encoder.

For machines with no fine-tuned weights (the offline catalog): classify and sentiment score
the text's similarity to label descriptions; qa returns the context sentence closest to the
question; summarize picks the sentences closest to the document's centroid; rerank scores each
document by its cosine similarity to the query. Each is named in GET /v1/models so nobody
mistakes it for a fine-tuned head. Catalog `options` are typed in app/spec.py
(SemanticClassifyOptions, SemanticSentimentOptions, SimilarityOptions, SemanticRerankOptions).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.runtimes.base import Backend, ModelInputs, ModelOutputs
from app.spec import (
    SemanticClassifyOptions,
    SemanticRerankOptions,
    SemanticSentimentOptions,
    SimilarityOptions,
    TaskName,
)
from app.tasks.base import Encoded, sigmoid, softmax
from app.tasks.classification import (
    ClassifyParams,
    LabelScore,
    SentimentParams,
    SentimentResult,
    example_labels,
    fill_template,
    ranked,
    shape_sentiment,
    top_label_agreement,
)
from app.tasks.embed import SentenceEncoderTask, l2_normalize
from app.tasks.generation import PROBE_SUMMARY, SummarizeParams, Summary
from app.tasks.qa import (
    Answer,
    QAItem,
    QAParams,
    QAResult,
    example_qa_request,
    shape_answers,
)
from app.tasks.rerank import (
    DocumentScore,
    RerankItem,
    RerankParams,
    RerankProbes,
    check_template,
    document_windows,
    encoding_row,
    logistic,
    piece_encoder,
    query_too_long,
)
from app.tasks.sentences import sentence_spans


class _VectorCache:
    """Embeddings of repeated short texts (label hypotheses), shared across requests."""

    def __init__(self, capacity: int = 4096) -> None:
        self._vectors: dict[str, np.ndarray] = {}
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            return self._vectors.get(text)

    def put(self, text: str, vector: np.ndarray) -> None:
        with self._lock:
            if len(self._vectors) >= self._capacity:
                self._vectors.pop(next(iter(self._vectors)))
            self._vectors[text] = vector


@dataclass(frozen=True)
class LabelHypotheses:
    """Context for decode: which rows hold what, and cached vectors for the rest."""

    texts: tuple[str, ...]  # label hypotheses in label order
    cached: tuple[np.ndarray | None, ...]


@dataclass(frozen=True)
class SentenceContext:
    """The text and its sentences' character spans (one row per sentence, in order)."""

    text: str
    spans: list[tuple[int, int]]


@dataclass(frozen=True)
class SummaryContext(SentenceContext):
    lengths: list[int]  # each sentence's own token count, for the length budget


class _SimilarityLabeller(SentenceEncoderTask[str, Any, Any]):
    """Row 0 embeds the text; the other rows embed label hypotheses missing from the cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = self.spec.options_as(SimilarityOptions).temperature
        self.cache = _VectorCache()

    def _rows_for(self, text: str, hypotheses: tuple[str, ...]) -> Encoded:
        cached = tuple(self.cache.get(h) for h in hypotheses)
        missing = [h for h, c in zip(hypotheses, cached, strict=True) if c is None]
        return Encoded(
            rows=self.rows([text, *missing]), context=LabelHypotheses(hypotheses, cached)
        )

    def _similarities(self, encoded: Encoded, outputs: ModelOutputs) -> np.ndarray:
        context = encoded.context_as(LabelHypotheses)
        vectors = l2_normalize(self.row_vectors(encoded, outputs))
        fresh = iter(vectors[1:])
        labels = []
        for text, vector in zip(context.texts, context.cached, strict=True):
            if vector is None:
                vector = next(fresh)
                self.cache.put(text, vector)
            labels.append(vector)
        sims: np.ndarray = np.stack(labels) @ vectors[0]
        return sims


class SemanticClassifyTask(_SimilarityLabeller):
    name = TaskName.CLASSIFY
    method = "zero-shot similarity (sentence embeddings)"
    zero_shot = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.spec.options_as(SemanticClassifyOptions)
        self.default_labels = options.labels
        self.template = options.hypothesis_template
        self.center = options.multi_label_center

    def _labels(self, params: ClassifyParams) -> tuple[str, ...]:
        return params.candidate_labels or self.default_labels

    def refusal(self, params: ClassifyParams) -> InvalidInput | None:
        if not self._labels(params):
            return InvalidInput(
                f'model {self.spec.name!r} has no default labels: pass "candidate_labels"'
            )
        return None

    def encode(self, item: str, params: ClassifyParams) -> Encoded:
        # A template the request sent wins, even one equal to another model's default.
        template = params.hypothesis_template or self.template
        hypotheses = tuple(fill_template(template, label) for label in self._labels(params))
        return self._rows_for(item, hypotheses)

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: ClassifyParams
    ) -> list[LabelScore]:
        sims = self._similarities(encoded, outputs)
        labels = self._labels(params)
        if params.multi_label:
            scores = sigmoid((sims - self.center) / self.temperature)
        else:
            scores = softmax(sims / self.temperature)
        return ranked(labels, scores, params.top_k)

    def warmup_request(self) -> tuple[str, ClassifyParams]:
        return "warm-up request", ClassifyParams(candidate_labels=self.default_labels or ("a", "b"))

    def example_request(self, fields: Mapping[str, Any]) -> tuple[str, ClassifyParams]:
        text, params = super().example_request(fields)
        labels = example_labels(fields)
        return text, ClassifyParams(candidate_labels=labels) if labels else params

    def agreement(self, reference: list[LabelScore], candidate: list[LabelScore]) -> float:
        return top_label_agreement(reference, candidate)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "labels": list(self.default_labels),
            "template": self.template,
        }


class SemanticSentimentTask(_SimilarityLabeller):
    """Each label is the mean of its descriptions' similarities to the text."""

    name = TaskName.SENTIMENT
    method = "zero-shot similarity to label descriptions (sentence embeddings)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        labels = self.spec.options_as(SemanticSentimentOptions).labels
        self.labels = list(labels)
        self.descriptions = list(labels.values())
        self.hypotheses = tuple(d for group in self.descriptions for d in group)

    def encode(self, item: str, params: SentimentParams) -> Encoded:
        return self._rows_for(item, self.hypotheses)

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: SentimentParams
    ) -> SentimentResult:
        sims = iter(self._similarities(encoded, outputs))
        per_label = np.array([np.mean([next(sims) for _ in group]) for group in self.descriptions])
        scores = softmax(per_label / self.temperature)
        return shape_sentiment(ranked(self.labels, scores, params.top_k), params)

    def warmup_request(self) -> tuple[str, SentimentParams]:
        return "warm-up request", SentimentParams()

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "labels": self.labels}


class SemanticQATask(SentenceEncoderTask[QAItem, QAParams, QAResult]):
    """The answer is the context sentence most similar to the question.

    Each sentence is scored alone and together with the sentence before it, averaged: the
    pair resolves pronouns ("It is 8,849 metres tall.") that alone match nothing. On the
    labelled set: 10/12 alone, 11/12 averaged.
    """

    name = TaskName.QA
    method = "extractive: most similar context sentence (sentence embeddings)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.temperature = self.spec.options_as(SimilarityOptions).temperature

    def encode(self, item: QAItem, params: QAParams) -> Encoded:
        text = item.context
        spans = sentence_spans(text)
        sentences = [text[s:e] for s, e in spans]
        # sentence i with sentence i-1 before it, for i >= 1
        pairs = [text[spans[i - 1][0] : spans[i][1]] for i in range(1, len(spans))]
        return Encoded(
            rows=self.rows([item.question, *sentences, *pairs]),
            context=SentenceContext(text, spans),
        )

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: QAParams) -> QAResult:
        own = encoded.context_as(SentenceContext)
        context, spans = own.text, own.spans
        vectors = l2_normalize(self.row_vectors(encoded, outputs))
        n = len(spans)
        alone = vectors[1 : 1 + n] @ vectors[0]
        paired = np.concatenate([alone[:1], vectors[1 + n :] @ vectors[0]])
        scores = softmax((alone + paired) / 2 / self.temperature)
        order = np.argsort(-scores, kind="stable")[: params.top_k]
        answers = [
            Answer(context[spans[i][0] : spans[i][1]], float(scores[i]), *spans[i]) for i in order
        ]
        return shape_answers(answers, params)

    def warmup_request(self) -> tuple[QAItem, QAParams]:
        return QAItem("What is warmed up?", "The model is warmed up. Then it serves."), QAParams()

    def example_request(self, fields: Mapping[str, Any]) -> tuple[QAItem, QAParams]:
        return example_qa_request(fields)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "null_answer": False}


class SemanticSummarizeTask(SentenceEncoderTask[str, SummarizeParams, Summary]):
    """The sentences nearest the document's centroid, as many as fit in max_length tokens
    (a prefix of the ranking, so an off-topic sentence comes last), in document order; if that
    is under min_length, further sentences that fit are added."""

    name = TaskName.SUMMARIZE
    method = "extractive: sentences nearest the document centroid (sentence embeddings)"

    def example_request(self, fields: Mapping[str, Any]) -> tuple[str, SummarizeParams]:
        return str(fields["text"]), PROBE_SUMMARY

    def encode(self, item: str, params: SummarizeParams) -> Encoded:
        spans = sentence_spans(item)
        sentences = [item[s:e] for s, e in spans]
        # untruncated, without special tokens: the budget counts the summary's own tokens
        plain = self.tokenizer(sentences, add_special_tokens=False)["input_ids"]
        lengths = [len(ids) for ids in plain]
        return Encoded(rows=self.rows(sentences), context=SummaryContext(item, spans, lengths))

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: SummarizeParams) -> Summary:
        own = encoded.context_as(SummaryContext)
        text, spans, lengths = own.text, own.spans, own.lengths
        vectors = l2_normalize(self.row_vectors(encoded, outputs))
        centroid = l2_normalize(vectors.mean(0))
        ranked = [int(i) for i in np.argsort(-(vectors @ centroid), kind="stable")]
        chosen: list[int] = []
        used = 0
        for i in ranked:  # the longest prefix of the ranking that fits max_length
            if used + lengths[i] > params.max_length:
                break
            chosen.append(i)
            used += lengths[i]
        for i in ranked[len(chosen) :]:  # still short of min_length: add what fits
            if used >= params.min_length:
                break
            if used + lengths[i] <= params.max_length:
                chosen.append(i)
                used += lengths[i]
        if not chosen:  # even the best sentence is too long: cut it at max_length tokens
            start, end = spans[ranked[0]]
            return Summary(self._cut(text[start:end], params.max_length))
        return Summary(" ".join(text[spans[i][0] : spans[i][1]] for i in sorted(chosen)))

    def _cut(self, sentence: str, tokens: int) -> str:
        offsets = self.tokenizer(sentence, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        return sentence[: offsets[tokens - 1][1]] if tokens <= len(offsets) else sentence

    def warmup_request(self) -> tuple[str, SummarizeParams]:
        return "The model warms up. Then it serves.", SummarizeParams(min_length=0, max_length=8)


class SemanticRerankTask(
    RerankProbes, SentenceEncoderTask[RerankItem, RerankParams, DocumentScore]
):
    """A document's relevance is its cosine similarity to the query (sentence embeddings),
    its best window's for a document longer than the encoder's window; relevance_score is
    sigmoid((cosine - relevance_center) / temperature), raw_scores the cosine itself.

    Row 0 embeds the query, the others the document's windows. Every document of a request
    brings the same query row: identical rows of a batch run once (execute)."""

    name = TaskName.RERANK
    method = "semantic: cosine similarity of query and document (sentence embeddings)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.spec.options_as(SemanticRerankOptions)
        self.doc_stride = options.doc_stride
        self.center = options.relevance_center
        self.temperature = options.temperature
        self.pieces = piece_encoder(self)
        check_template(self, self.pieces, pair=False)
        self.specials = int(self.pieces.num_special_tokens_to_add(False))

    def encode(self, item: RerankItem, params: RerankParams) -> Encoded:
        room = self.max_length - self.specials
        query = self.pieces.encode(item.query, add_special_tokens=False)
        if len(query.ids) > room:
            raise query_too_long(self.spec.name, len(query.ids), self.max_length)
        document = self.pieces.encode(item.document, add_special_tokens=False)
        windows, truncated = document_windows(document, room, self.doc_stride, params)
        rows = [
            encoding_row(self.pieces.post_process(part), self.model_inputs)
            for part in (query, *windows)
        ]
        return Encoded(rows=rows, truncated=truncated)

    def execute(
        self, backend: Backend, inputs: ModelInputs, params: RerankParams, deadline: float | None
    ) -> ModelOutputs:
        """Run each distinct row once (a request's query rows are all alike)."""
        key = np.concatenate(list(inputs.values()), axis=1)
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        if len(first) == len(key):
            return backend.forward(inputs)
        outputs = backend.forward({name: value[first] for name, value in inputs.items()})
        return {name: value[inverse.reshape(-1)] for name, value in outputs.items()}

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: RerankParams
    ) -> DocumentScore:
        vectors = l2_normalize(self.row_vectors(encoded, outputs))
        best = float((vectors[1:] @ vectors[0]).max())
        score = best if params.raw_scores else logistic((best - self.center) / self.temperature)
        return DocumentScore(
            score=score,
            windows=len(encoded.rows) - 1,
            truncated=encoded.truncated,
            tokens=sum(len(row["input_ids"]) for row in encoded.rows),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "score": f"sigmoid((cosine - {self.center:g}) / {self.temperature:g})",
            "doc_stride": self.doc_stride,
        }
