"""`backend: auto` and `precision: auto`: measure the engines this CPU offers, keep those that
answer like the fp32 reference, serve the fastest.

The fastest correct engine depends on the CPU (AMX, AVX-512 bf16/VNNI, AVX2 only) and on the
library versions, so a catalog cannot name it. On first load each candidate (backend,
precision) that can run the entry's head on this device is exported into its cache, loaded,
and

1. answers the probes: the task's labelled set shipped in app/calibration/labelled/ where the
   project has one, else calibration texts. Its answers are compared with the fp32
   reference's (torch fp32 when it is a candidate): the same label, span or text (rerank: the
   same best document of an example's documents) on at least
   `auto_min_agreement` of the probes, or, for embeddings, a cosine of at least
   `auto_min_cosine` on every probe. A candidate below that bar is never chosen.
2. runs the probes' rows at batch size 1 and at the entry's max_batch_size, each for
   `auto_measure_seconds`; its speed is the geometric mean of the rows/s at the two sizes.

The fastest fp32 candidate is chosen unless a lower precision is faster by more than
`auto_speedup_margin`. The decision, every candidate's figures, the CPU and the library
versions are written to a JSON file in `auto_cache_dir` whose name is a digest of all of
them (and of the entry and its weights), logged, and shown by GET /v1/models. A later start
on the same CPU with the same versions reads the file instead of measuring again; another
CPU or another version finds no file and measures anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from app import __version__
from app.errors import ModelLoadError, ServeError
from app.pipeline import ServedModel
from app.registry.model import build_model, load_tokenizer
from app.runtimes import backend_class
from app.runtimes.base import Head
from app.runtimes.cpu import cpu_fingerprint, describe_cpu
from app.runtimes.device import resolve_device
from app.runtimes.openvino_export import load_calibration
from app.settings import Settings
from app.spec import AUTO, ModelSpec, TaskName

logger = logging.getLogger(__name__)

# The engines `backend: auto` tries ("fake" only when named on purpose, in tests), in the order
# their fp32 is the reference: PyTorch runs the model as trained.
ENGINES = ("torch", "onnx", "openvino")
VERSIONED_PACKAGES = ("torch", "transformers", "onnxruntime", "onnxscript", "openvino", "nncf")
DECISION_FORMAT = 1


@dataclass(frozen=True)
class Candidate:
    backend: str
    precision: str

    def __str__(self) -> str:
        return f"{self.backend} {self.precision}"


@dataclass
class Measured:
    """One candidate's figures: rows/s per batch size, agreement with the reference."""

    backend: str
    precision: str
    rows_per_s: dict[str, float] = field(default_factory=dict)
    agreement: float | None = None  # share of probes agreeing, or the worst cosine
    kept: bool = True
    note: str = ""

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.backend, self.precision)

    @property
    def speed(self) -> float:
        """Geometric mean of rows/s over the batch sizes measured (0 when none ran)."""
        rates = [rate for rate in self.rows_per_s.values() if rate > 0]
        if not rates:
            return 0.0
        return math.exp(sum(math.log(rate) for rate in rates) / len(rates))


@dataclass
class Decision:
    backend: str
    precision: str
    reference: str
    reason: str
    probes: str
    candidates: list[Measured]
    cpu: dict[str, Any]
    versions: dict[str, str]
    made_at: str
    seconds: float
    rules: dict[str, float]
    reused: bool = False  # read back from the decision file, not measured in this process

    def describe(self) -> dict[str, Any]:
        """What GET /v1/models shows."""
        return {
            "chosen": f"{self.backend} {self.precision}",
            "reason": self.reason,
            "reference": self.reference,
            "probes": self.probes,
            "cpu": describe_cpu(self.cpu),
            "made_at": self.made_at,
            "measured_now": not self.reused,
            "candidates": [
                {
                    "backend": m.backend,
                    "precision": m.precision,
                    "rows_per_s": {k: round(v, 1) for k, v in m.rows_per_s.items()},
                    "agreement": None if m.agreement is None else round(m.agreement, 6),
                    "kept": m.kept,
                    **({"note": m.note} if m.note else {}),
                }
                for m in self.candidates
            ],
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("reused")
        return {"format": DECISION_FORMAT, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        fields = {k: v for k, v in data.items() if k != "format"}
        fields["candidates"] = [Measured(**m) for m in fields["candidates"]]
        return cls(**fields, reused=True)


def library_versions() -> dict[str, str]:
    versions = {"nlp-serve": __version__}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def candidates(spec: ModelSpec, head: Head, device: str) -> list[Candidate]:
    """Every (backend, precision) the entry allows that can run its head on this device."""
    backends = ENGINES if spec.backend == AUTO else (spec.backend,)
    found = []
    for name in backends:
        for precision in backend_class(name).precisions(head, device):
            if spec.precision in (AUTO, precision):
                found.append(Candidate(name, precision))
    return found


def reference_of(found: Sequence[Candidate]) -> Candidate | None:
    """The fp32 candidate of the engine earliest in ENGINES (torch when there)."""
    fp32 = [c for c in found if c.precision == "fp32"]
    order = {name: i for i, name in enumerate(ENGINES)}
    return min(fp32, key=lambda c: order.get(c.backend, len(order)), default=None)


def choose(measured: Sequence[Measured], margin: float) -> tuple[Measured, str]:
    """The fastest kept fp32 candidate, unless a kept lower precision beats it by `margin`."""
    kept = [m for m in measured if m.kept and m.speed > 0]
    if not kept:
        raise ValueError("no candidate kept")
    fp32 = max((m for m in kept if m.precision == "fp32"), key=lambda m: m.speed, default=None)
    lower = max((m for m in kept if m.precision != "fp32"), key=lambda m: m.speed, default=None)
    if fp32 is None:
        assert lower is not None
        return lower, f"fastest kept candidate ({lower.speed:.1f} rows/s); no fp32 candidate"
    if lower is None:
        return fp32, f"fastest fp32 candidate ({fp32.speed:.1f} rows/s); no lower precision kept"
    ratio = lower.speed / fp32.speed
    if ratio >= 1 + margin:
        return lower, (
            f"{lower.candidate} is {ratio:.2f}x the fastest fp32 ({fp32.candidate}), past the "
            f"{1 + margin:.2f}x margin, and agrees with the reference"
        )
    return fp32, (
        f"fastest fp32 candidate; the fastest lower precision ({lower.candidate}) is "
        f"{ratio:.2f}x, under the {1 + margin:.2f}x margin"
    )


# -- probes ------------------------------------------------------------------------------

LABELLED_DIR = "labelled"


def labelled_examples(task: TaskName) -> list[dict[str, Any]]:
    """The task's labelled set shipped with the service, as example fields (params merged)."""
    resource = resources.files("app.calibration").joinpath(f"{LABELLED_DIR}/{task.value}.jsonl")
    if not resource.is_file():
        return []
    examples = []
    for line in resource.read_text("utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            examples.append({**raw, **raw.get("params", {})})
    return examples


def calibration_examples(limit: int) -> list[dict[str, Any]]:
    """Calibration sentences as examples: each text is its own question, and the context is
    it with the next three, so every task can read one."""
    texts = load_calibration().sentences
    return [
        {"text": text, "question": text, "context": " ".join(texts[i : i + 4])}
        for i, text in enumerate(texts[:limit])
    ]


# One probe's requests [(item, params)]: one for most tasks, one per document for rerank
# (Task.example_requests), whose answers are compared together (Task.probe_agreement).
Probe = list[tuple[Any, Any]]


def probe_requests(model: ServedModel, limit: int) -> tuple[str, list[Probe]]:
    """(what the probes are, the probes): the labelled set when the model can take every
    example of it, else calibration texts."""
    task = model.task
    labelled = labelled_examples(model.spec.task)[:limit]
    if labelled:
        probes = [task.example_requests(fields) for fields in labelled]
        if all(task.refusal(params) is None for probe in probes for _, params in probe):
            name = f"labelled set app/calibration/{LABELLED_DIR}/{model.spec.task.value}.jsonl"
            return f"{name} ({len(probes)} examples)", probes
    probes = [task.example_requests(fields) for fields in calibration_examples(limit)]
    return f"calibration texts ({len(probes)})", probes


def answer_all(model: ServedModel, probes: Sequence[Probe]) -> list[list[Any]]:
    """Each probe's answers, through the model's own encode, forward and decode."""
    answers = []
    for probe in probes:
        answered = []
        for item, params in probe:
            encoded = model.encode(item, params)
            outputs = model.forward_rows(encoded.rows, params).value
            answered.append(model.decode(encoded, outputs, params).value)
        answers.append(answered)
    return answers


def agreement(
    model: ServedModel, reference: Sequence[list[Any]], answers: Sequence[list[Any]]
) -> float:
    """Share of probes agreeing (answers), or the worst cosine (embeddings)."""
    scores = [model.task.probe_agreement(r, a) for r, a in zip(reference, answers, strict=True)]
    if model.task.agreement_kind == "cosine":
        return min(scores)
    return sum(scores) / len(scores)


def passes(model: ServedModel, value: float, settings: Settings) -> bool:
    if model.task.agreement_kind == "cosine":
        return value >= settings.auto_min_cosine
    return value >= settings.auto_min_agreement


# -- timing ------------------------------------------------------------------------------


def batch_sizes(spec: ModelSpec) -> list[int]:
    return sorted({1, spec.batching.max_batch_size})


def timing_rows(
    model: ServedModel, probes: Sequence[Probe]
) -> tuple[list[dict[str, list[int]]], Any]:
    """Rows of the probes that share the first probe's params (one batch key), and those
    params: what each candidate runs for its timing."""
    requests = [request for probe in probes for request in probe]
    first = requests[0][1]
    rows = []
    for item, params in requests:
        if model.batch_key(params) == model.batch_key(first):
            rows.extend(model.encode(item, params).rows)
    return rows, first


def rows_per_second(
    model: ServedModel, rows: Sequence[dict[str, list[int]]], params: Any, size: int, budget: float
) -> float:
    """Rows per second at one batch size: two warm-up runs (first-call kernel set-up), then at
    least 3 runs and until `budget` seconds have passed (at most 200 runs). The batch is rows
    of neighbouring lengths from the middle of the probes, as the batcher groups similar
    lengths (min_fill), not a mix that pads every row to the longest."""
    ordered = sorted(rows, key=lambda row: len(row["input_ids"]))
    start = max(0, (len(ordered) - size) // 2)
    batch = [ordered[(start + i) % len(ordered)] for i in range(size)]
    while len(batch) > 1 and len(batch) * max(len(r["input_ids"]) for r in batch) > (
        model.batching.max_batch_tokens
    ):
        batch.pop()  # the batcher never sends more padded tokens than this
    for _ in range(2):
        model.forward_rows(batch, params)
    runs, started = 0, time.perf_counter()
    while runs < 3 or (time.perf_counter() - started < budget and runs < 200):
        model.forward_rows(batch, params)
        runs += 1
    return len(batch) * runs / (time.perf_counter() - started)


# -- the decision ------------------------------------------------------------------------


def decision_path(spec: ModelSpec, model_dir: Path, settings: Settings) -> Path:
    """One file per (entry, weights, CPU, versions): a change of any of them misses it."""
    weights = sorted(p.name + str(p.stat().st_size) for p in model_dir.glob("*") if p.is_file())
    entry = spec.model_dump(mode="json", exclude={"name", "default"})
    recipe = json.dumps(
        [entry, str(model_dir), weights, cpu_fingerprint(), library_versions(),
         settings.auto_min_agreement, settings.auto_min_cosine, settings.auto_speedup_margin,
         settings.auto_max_probes, DECISION_FORMAT],
        sort_keys=True,
    )  # fmt: skip
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    return settings.auto_cache_dir / f"{model_dir.name}-{spec.task.value}-{digest}.json"


def read_decision(path: Path) -> Decision | None:
    try:
        data = json.loads(path.read_text("utf-8"))
        if data.get("format") != DECISION_FORMAT:
            return None
        return Decision.from_json(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent or unreadable: measured again and rewritten


def write_decision(path: Path, decision: Decision) -> bool:
    """Keep the decision for later starts; a read-only cache (a baked image on another CPU
    kind) only costs measuring again next time, so it is logged, not fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
            json.dump(decision.to_json(), out, indent=2)
        os.replace(out.name, path)  # atomic: a concurrent reader sees the old file or the new
    except OSError as exc:
        logger.warning("auto decision not kept (%s: %s): the next start measures again",
                       type(exc).__name__, exc)  # fmt: skip
        return False
    return True


def concrete(spec: ModelSpec, candidate: Candidate) -> ModelSpec:
    """The entry with the candidate's backend and precision, exporting where it must."""
    data = spec.model_dump(exclude={"backend_options"})
    data.update(
        backend=candidate.backend,
        precision=candidate.precision,
        export=candidate.backend in ("onnx", "openvino"),
    )
    return ModelSpec.model_validate(data)


Loader = Callable[[ModelSpec], ServedModel]


def measure(
    spec: ModelSpec, found: Sequence[Candidate], reference: Candidate, load: Loader,
    settings: Settings,
) -> tuple[list[Measured], str]:  # fmt: skip
    """Load each candidate in turn (the reference first), answer the probes, time it, close it."""
    measured: list[Measured] = []
    expected: list[list[Any]] = []
    probes, params = "", None
    requests: list[Probe] = []
    rows: list[dict[str, list[int]]] = []
    for candidate in [reference, *(c for c in found if c != reference)]:
        figures = Measured(candidate.backend, candidate.precision)
        measured.append(figures)
        try:
            model = load(concrete(spec, candidate))
        except Exception as exc:  # e.g. no CPU support, a read-only export cache: not a candidate
            what = str(exc) if isinstance(exc, ModelLoadError | ServeError) else repr(exc)
            figures.kept, figures.note = False, f"could not load: {what}"[:300]
            logger.warning("model %s: auto leaves out %s: %s", spec.name, candidate, what)
            if candidate == reference:
                raise ModelLoadError(
                    f"model {spec.name!r}: auto could not load its fp32 reference "
                    f"({candidate}): {exc}"
                ) from None
            continue
        try:
            if candidate == reference:
                probes, requests = probe_requests(model, settings.auto_max_probes)
                rows, params = timing_rows(model, requests)
            answers = answer_all(model, requests)
            if candidate == reference:
                expected = answers
            else:
                figures.agreement = agreement(model, expected, answers)
                figures.kept = passes(model, figures.agreement, settings)
                if not figures.kept:
                    figures.note = "answers differ from the reference's beyond the bar"
            for size in batch_sizes(spec):
                figures.rows_per_s[str(size)] = rows_per_second(
                    model, rows, params, size, settings.auto_measure_seconds
                )
        finally:
            model.close()
        logger.info("model %s: auto measured %s: %s rows/s, agreement %s%s", spec.name,
                    candidate, {k: round(v, 1) for k, v in figures.rows_per_s.items()},
                    figures.agreement, "" if figures.kept else " (dropped)")  # fmt: skip
    return measured, probes


def decide(
    spec: ModelSpec, model_dir: Path, head: Head, settings: Settings, load: Loader
) -> Decision:
    """The decision for an auto entry: read back when this CPU and these versions made it
    already, else measured now and written down."""
    path = decision_path(spec, model_dir, settings)
    known = read_decision(path)
    if known is not None:
        logger.info("model %s: auto serves %s %s, decided on %s at %s (%s)", spec.name,
                    known.backend, known.precision, describe_cpu(known.cpu), known.made_at,
                    path)  # fmt: skip
        return known
    device = resolve_device(spec.device, spec.name)
    found = candidates(spec, head, device)
    reference = reference_of(found)
    if reference is None:
        raise ModelLoadError(
            f"model {spec.name!r}: backend {spec.backend} / precision {spec.precision} leaves no "
            f"fp32 engine to compare with on {device} (candidates: "
            f"{[str(c) for c in found] or 'none'}); name the backend or precision yourself"
        )
    started = time.perf_counter()
    measured, probes = measure(spec, found, reference, load, settings)
    chosen, reason = choose(measured, settings.auto_speedup_margin)
    decision = Decision(
        backend=chosen.backend, precision=chosen.precision, reference=str(reference),
        reason=reason, probes=probes, candidates=measured, cpu=cpu_fingerprint(),
        versions=library_versions(), made_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        seconds=round(time.perf_counter() - started, 1),
        rules={"min_agreement": settings.auto_min_agreement,
               "min_cosine": settings.auto_min_cosine,
               "speedup_margin": settings.auto_speedup_margin},
    )  # fmt: skip
    write_decision(path, decision)
    logger.info("model %s: auto chose %s on %s in %.1f s: %s (decision in %s)", spec.name,
                chosen.candidate, describe_cpu(decision.cpu), decision.seconds, reason,
                path)  # fmt: skip
    return decision


def load_auto(
    spec: ModelSpec, model_dir: Path, head: Head, tokenizer: Any, settings: Settings
) -> ServedModel:
    """Decide (or read the decision), then load the chosen engine for serving."""

    def load(candidate_spec: ModelSpec) -> ServedModel:
        return build_model(candidate_spec, model_dir, tokenizer, settings)

    decision = decide(spec, model_dir, head, settings, load)
    model = load(concrete(spec, Candidate(decision.backend, decision.precision)))
    model.decision = decision.describe()
    return model


def prepare_auto(spec: ModelSpec, model_dir: Path, head: Head, settings: Settings) -> Path:
    """`nlp-serve pull --export`: make every candidate's export and the decision now."""
    load_auto(spec, model_dir, head, load_tokenizer(spec, model_dir), settings).close()
    return decision_path(spec, model_dir, settings)
