"""generate: tokens/s and time to first token of causal-LM generation, continuous batching vs
static batching vs the transformers pipeline, on every engine that loads.

The model is a small GPT-2 built here with random weights (4 layers, 256 wide, 4 heads,
n_positions 1024, ~3.9M parameters) on the byte-level BPE tokenizer trained here
(tests.fixtures.tiny_models.byte_level_tokenizer: 2,000 tokens, no hub): the speed does not
depend on the weights' values, and end-of-text is ignored (`ignore_eos`), so every request
generates exactly its max_new_tokens.

The workload (seeded, the same for every row): a pool of requests, each a prompt of 16-256
tokens (uniform; a slice of the calibration text, its length checked with the tokenizer)
asking for 16-128 new tokens (uniform), greedy (temperature 0), `ignore_eos: true`, streamed
(`stream: true`, Server-Sent Events). Arrivals over time: N closed-loop streams (1, 8, 32), each
starting after its own seeded offset, uniform in [0, --stagger) seconds, then sending its next
request as soon as its previous answer has ended; stream i's j-th request is the pool's
(j * N + i)-th. Measured client-side over the steady window, from the last stream's start to
--duration:

- tokens/s: token events received in the window / the window's length (all streams);
- time to first token (TTFT): from sending a request to its first token event, for requests
  sent in the window (those still running at its end are waited for);
- inter-token gap: between consecutive token events of one request;
- from the server's /metrics between the row's start and end: the mean decoder step
  (`nlp_serve_inference_duration_seconds{stage="decode_step"}`), the mean prefill chunk, and
  the mean sequences per decoder step.

Rows, per engine (torch, onnx, openvino: --engines; by default each that loads in-process):

- `continuous`: the catalog's default scheduling: sequences join and leave the running batch
  between decoder steps (max_batch_size 32, kv_cache_tokens 16384: never the limit here,
  prefill_chunk_tokens 256, the default);
- `static`: the same engine and options with `scheduling: static`: a batch starts only when
  the previous one has finished (the static-batching baseline);
- `pipeline` (PyTorch only): transformers.pipeline("text-generation") in a process of its own,
  serving the same requests one at a time as a naive server would (min_new_tokens =
  max_new_tokens in place of ignore_eos). It does not stream, so its TTFT is the whole
  generation. It is measured at one stream (back to back for --duration); the rows at 8 and 32
  streams replay those measured service times through a one-worker FIFO queue with the same
  closed-loop, staggered streams (`simulated` in the JSON).

The aims, printed per engine: at 32 streams, continuous tokens/s >= 3x static's; and TTFT p50
at 32 streams within two decoder steps (the mean decode_step at 32 streams) of the idle TTFT
p50 (1 stream), continuous.

    .venv/bin/python -m bench.generate                 # about 2.5 minutes per engine
    .venv/bin/python -m bench.generate --quick --no-save   # a smoke run, under a minute
    .venv/bin/python -m bench.generate --engines torch onnx --streams 1 8 32 --duration 30

`make bench` (bench/suite.py) runs the same rows (its results JSON's `generate` section).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import multiprocessing
import random
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    CACHE,
    CACHE_DIRS,
    ROOT,
    cache_env,
    histogram_totals,
    machine,
    process_cpu_s,
    result_path,
    save,
    serve,
)
from bench.loadgen import percentile

ENGINES = ("torch", "onnx", "openvino")
SCHEDULINGS = ("continuous", "static")
STREAMS = (1, 8, 32)
GPT2: dict[str, Any] = {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_positions": 1024}
PROMPT_TOKENS = (16, 256)  # uniform, inclusive
NEW_TOKENS = (16, 128)  # uniform, inclusive
POOL = 512  # distinct requests the streams go through
MAX_RUNNING = 32  # batching.max_batch_size: sequences decoded together
OPTIONS = {"kv_cache_tokens": 16384, "prefill_chunk_tokens": 256}
DURATION_S = 20.0
STAGGER_S = 2.0
DEADLINE_S = 120.0  # the server's generate deadline (NLP_SERVE_GENERATE_TIMEOUT_MS's default)
AIM_SPEEDUP = 3.0  # continuous / static tokens/s at the most streams
AIM_TTFT_STEPS = 2.0  # TTFT p50 under load - idle, in decoder steps
STAGE = "nlp_serve_inference_duration_seconds"


# -- the model and the workload -----------------------------------------------------------


def gpt2_dir() -> Path:
    """A GPT-2 of GPT2's sizes with random weights (seeded) on the byte-level BPE tokenizer
    the tests train here: real shapes, no hub."""
    out = CACHE / f"gpt2-{GPT2['n_layer']}x{GPT2['n_embd']}-random"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.fixtures.tiny_models import END_OF_TEXT, byte_level_tokenizer

    tokenizer = byte_level_tokenizer()
    tokenizer.model_max_length = GPT2["n_positions"]
    end = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=end, eos_token_id=end,
                        pad_token_id=end, **GPT2)  # fmt: skip
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@dataclass(frozen=True)
class GenRequest:
    prompt: str
    prompt_tokens: int  # as the tokenizer reads the prompt back
    max_new_tokens: int


def workload(
    tokenizer: Any,
    count: int = POOL,
    seed: int = 0,
    prompt_tokens: tuple[int, int] = PROMPT_TOKENS,
    new_tokens: tuple[int, int] = NEW_TOKENS,
) -> list[GenRequest]:
    """`count` requests: prompts of uniform [prompt_tokens] tokens (slices of the calibration
    text at seeded offsets), each asking for uniform [new_tokens] new tokens."""
    rng = random.Random(seed)
    lines = (ROOT / "app" / "calibration" / "en_generic.txt").read_text().split("\n")
    lines = [line for line in lines if line.strip()]
    rng.shuffle(lines)
    ids: list[int] = tokenizer(" ".join(lines), verbose=False)["input_ids"]
    while len(ids) < 2 * prompt_tokens[1]:
        ids = ids + ids
    out = []
    for _ in range(count):
        n = rng.randint(*prompt_tokens)
        start = rng.randrange(len(ids) - n)
        text = tokenizer.decode(ids[start : start + n])
        actual = len(tokenizer(text, verbose=False)["input_ids"])
        out.append(GenRequest(text, actual, rng.randint(*new_tokens)))
    return out


def body(request: GenRequest, model: str) -> dict[str, Any]:
    return {"model": model, "inputs": request.prompt, "max_new_tokens": request.max_new_tokens,
            "temperature": 0.0, "ignore_eos": True, "stream": True}  # fmt: skip


def offsets(streams: int, stagger: float, seed: int = 1) -> list[float]:
    """Each stream's start, seconds after the row's start: uniform in [0, stagger)."""
    rng = random.Random(seed * 1000 + streams)
    return [rng.uniform(0, stagger) for _ in range(streams)]


def nth(pool: Sequence[GenRequest], streams: int, stream: int, j: int) -> GenRequest:
    """Stream `stream`'s j-th request: the same sequence for every row of `streams` streams."""
    return pool[(j * streams + stream) % len(pool)]


# -- the streaming client -----------------------------------------------------------------


@dataclass
class Outcome:
    """One streamed request as the client saw it (perf_counter seconds)."""

    stream: int
    sent: float
    tokens: list[float] = field(default_factory=list)  # each token event's arrival
    ok: bool = False
    error: str | None = None
    completion_tokens: int = 0


async def stream_one(session: Any, url: str, data: dict[str, Any], stream: int) -> Outcome:
    """POST one streamed request; time each `data:` token event until usage (or an error)."""
    import aiohttp

    outcome = Outcome(stream, time.perf_counter())
    try:
        async with session.post(url, json=data) as response:
            if response.status != 200:
                text = (await response.read())[:300]
                outcome.error = f"HTTP {response.status}: {text!r}"
                return outcome
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                kind = event.get("type")
                if kind == "token":
                    outcome.tokens.append(time.perf_counter())
                elif kind == "finish":
                    outcome.completion_tokens += int(event["completion_tokens"])
                elif kind == "usage":
                    outcome.ok = True
                elif kind == "error":
                    outcome.error = f"error event: {event.get('error')}"[:300]
            if not outcome.ok and outcome.error is None:
                outcome.error = "the stream ended without a usage event"
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"[:300]
    return outcome


@dataclass
class Drive:
    """One row's run: every request's outcome, the steady window (perf_counter seconds), and
    the server's /metrics and CPU seconds at its edges."""

    outcomes: list[Outcome]
    window: tuple[float, float]
    metrics: tuple[str, str] = ("", "")
    server_cpu_s: float = float("nan")  # in the window, all its threads
    client_cpu_s: float = float("nan")  # this process, in the window


async def drive(
    base: str,
    model: str,
    pool: Sequence[GenRequest],
    streams: int,
    duration: float,
    stagger: float,
    server_pid: int | None = None,
    drain_s: float = DEADLINE_S,
) -> Drive:
    """Closed-loop staggered streams to `base`/v1/generate for `duration` seconds; the window
    runs from the last stream's start to `duration`. Requests in flight at the end are waited
    for (at most drain_s), then dropped."""
    import aiohttp

    starts = offsets(streams, stagger)
    outcomes: list[Outcome] = []
    url = f"{base}/v1/generate"
    connector = aiohttp.TCPConnector(limit=streams + 1)
    timeout = aiohttp.ClientTimeout(total=DEADLINE_S + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # warm-up: one short request per stream (connections open, the model's shapes seen)
        short = GenRequest(pool[0].prompt[:40] or "warm-up", 0, 4)
        await asyncio.gather(*(stream_one(session, url, body(short, model), s)
                               for s in range(streams)))  # fmt: skip
        begin = time.perf_counter()
        window = (begin + max(starts), begin + duration)

        async def client(stream: int) -> None:
            await asyncio.sleep(starts[stream])
            j = 0
            while time.perf_counter() < window[1]:
                request = body(nth(pool, streams, stream, j), model)
                outcomes.append(await stream_one(session, url, request, stream))
                j += 1

        async def edge(at: float) -> tuple[str, float, float]:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            async with session.get(f"{base}/metrics") as response:
                text = await response.text()
            cpu = process_cpu_s(server_pid) if server_pid else float("nan")
            return text, cpu, time.process_time()

        tasks = [asyncio.create_task(client(s)) for s in range(streams)]
        first, last = await asyncio.gather(edge(window[0]), edge(window[1]))
        await asyncio.wait(tasks, timeout=duration + drain_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Drive(outcomes, window, (first[0], last[0]), last[1] - first[1], last[2] - first[2])


def summarize(outcomes: Sequence[Outcome], window: tuple[float, float]) -> dict[str, Any]:
    """The row's client-side figures over the window (see the module's docstring)."""
    start, end = window
    length = max(end - start, 1e-9)
    in_window = [o for o in outcomes if start <= o.sent < end]
    tokens = sum(1 for o in outcomes for t in o.tokens if start <= t <= end)
    ttft = sorted(o.tokens[0] - o.sent for o in in_window if o.tokens)
    gaps = sorted(b - a for o in in_window for a, b in zip(o.tokens, o.tokens[1:], strict=False)
                  if b <= end)  # fmt: skip
    errors = [o for o in outcomes if not o.ok]
    result: dict[str, Any] = {
        "window_s": length,
        "tokens": tokens,
        "tokens_per_s": tokens / length,
        "requests": len(in_window),
        "completed": sum(1 for o in outcomes if o.ok),
        "errors": len(errors),
        "ttft_p50_ms": percentile(ttft, 50) * 1000,
        "ttft_p90_ms": percentile(ttft, 90) * 1000,
        "ttft_p99_ms": percentile(ttft, 99) * 1000,
        "itl_p50_ms": percentile(gaps, 50) * 1000,
        "itl_p99_ms": percentile(gaps, 99) * 1000,
    }
    if errors:
        result["first_error"] = errors[0].error
    return result


# -- the server's view --------------------------------------------------------------------


def counter_total(metrics_text: str, name: str, **labels: str) -> float:
    """A counter's value (`<name>_total`), summed over the series matching the labels."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_total{{") and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def server_view(before: str, after: str, model: str, seconds: float) -> dict[str, float]:
    """Between two scrapes of /metrics `seconds` apart: the mean decoder step and prefill
    chunk (ms), the mean sequences per decoder step, and the share of the time in each."""
    totals = {}
    for name, labels in (("decode", {"stage": "decode_step"}), ("prefill", {"stage": "prefill"}),
                         ("first", {})):  # fmt: skip
        metric = STAGE if labels else "nlp_serve_time_to_first_token_seconds"
        s0, c0 = histogram_totals(before, metric, model=model, **labels)
        s1, c1 = histogram_totals(after, metric, model=model, **labels)
        totals[name] = (s1 - s0, c1 - c0)
    generated = counter_total(after, "nlp_serve_generated_tokens", model=model) - counter_total(
        before, "nlp_serve_generated_tokens", model=model
    )
    steps = totals["decode"][1]
    nan = float("nan")
    return {
        "decode_step_ms": totals["decode"][0] / steps * 1000 if steps else nan,
        "prefill_ms": (totals["prefill"][0] / totals["prefill"][1] * 1000
                       if totals["prefill"][1] else nan),
        # a sequence's first token comes from its prefill, every other from a decoder step
        "rows_per_step": (generated - totals["first"][1]) / steps if steps else nan,
        "decode_share": totals["decode"][0] / seconds if seconds > 0 else nan,
        "prefill_share": totals["prefill"][0] / seconds if seconds > 0 else nan,
    }  # fmt: skip


# -- engines and the server ---------------------------------------------------------------


def model_entry(engine: str, scheduling: str, source: str) -> dict[str, Any]:
    exported = {"export": True} if engine in ("onnx", "openvino") else {}
    return {"name": f"gen-{engine}-{scheduling}", "task": "generate", "source": source,
            "device": "cpu", "backend": engine, "precision": "fp32", **exported,
            "options": {**OPTIONS, "scheduling": scheduling, "max_new_tokens": NEW_TOKENS[1]},
            "batching": {"max_batch_size": MAX_RUNNING, "max_queue": 1024}}  # fmt: skip


def probe(source: str, engine: str) -> str | None:
    """Load the model on `engine` and warm it up (a prefill and decoder steps; this also
    makes the exports in the shared cache, so the server finds them): None, or why not."""
    from app.registry.model import load_model
    from app.settings import Settings
    from app.spec import ModelSpec

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        onnx_cache_dir=CACHE_DIRS["onnx_cache_dir"],
        openvino_cache_dir=CACHE_DIRS["openvino_cache_dir"],
        auto_cache_dir=CACHE_DIRS["auto_cache_dir"],
    )
    entry = {k: v for k, v in model_entry(engine, "continuous", source).items()
             if k != "batching"}  # fmt: skip
    try:
        model = load_model(ModelSpec.model_validate(entry), settings)
        model.warm_up()
        model.close()
    except Exception as exc:  # an engine without generation (yet): left out, and why
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def loadable(source: str, engines: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The engines whose model loads and warms up, each tried in a process of its own (so no
    engine's thread pools stay behind in this one, which runs the pipeline and the client),
    and why each other one did not."""
    ok, skipped = [], {}
    for engine in engines:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            reason = pool.submit(probe, source, engine).result()
        if reason is None:
            ok.append(engine)
        else:
            skipped[engine] = reason
            print(f"engine {engine}: not benchmarked ({reason})", flush=True)
    return ok, skipped


def order(configs: Sequence[tuple[str, str]], round_: int) -> list[tuple[str, str]]:
    """The configurations in round `round_`'s order: turned by one each round."""
    shift = round_ % len(configs)
    return [*configs[shift:], *configs[:shift]]


def measure_http(base: str, engines: Sequence[str], pool: Sequence[GenRequest],
                 streams: Sequence[int], duration: float, stagger: float, rounds: int,
                 server_pid: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One row per engine, scheduling and stream count (medians over rounds)."""
    configs = [(engine, scheduling) for engine in engines for scheduling in SCHEDULINGS]
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for round_ in range(rounds):
        for count in streams:
            for engine, scheduling in order(configs, round_):
                name = f"gen-{engine}-{scheduling}"
                run = asyncio.run(drive(base, name, pool, count, duration, stagger, server_pid))
                seconds = run.window[1] - run.window[0]
                result = {**summarize(run.outcomes, run.window),
                          **server_view(*run.metrics, name, seconds),
                          "server_cores": run.server_cpu_s / seconds,
                          "client_cores": run.client_cpu_s / seconds}  # fmt: skip
                runs.setdefault((engine, scheduling, count), []).append(result)
                print(f"round {round_ + 1} {engine:>8} {scheduling:>10} streams={count:<3} "
                      f"{result['tokens_per_s']:8.1f} tokens/s  TTFT p50 "
                      f"{result['ttft_p50_ms']:8.1f} ms  step {result['decode_step_ms']:6.1f} ms "
                      f"x {result['rows_per_step']:4.1f} rows (steps "
                      f"{result['decode_share']:.0%}, prefill {result['prefill_share']:.0%} of "
                      f"the time)  server {result['server_cores']:.2f} cores  "
                      f"errors {result['errors']}", flush=True)  # fmt: skip
                if "first_error" in result:
                    print(f"    first error: {result['first_error']}", flush=True)
    rows = []
    for (engine, scheduling, count), results in runs.items():
        row: dict[str, Any] = {"engine": engine, "mode": scheduling, "streams": count}
        for key in results[0]:
            if key in ("requests", "completed", "errors", "tokens"):
                row[key] = sum(int(r[key]) for r in results)
            elif key != "first_error":
                row[key] = statistics.median(r[key] for r in results)
        errors = [r["first_error"] for r in results if "first_error" in r]
        if errors:
            row["first_error"] = errors[0]
        row["runs"] = [round(r["tokens_per_s"], 1) for r in results]
        rows.append(row)
    return rows


# -- the transformers pipeline ------------------------------------------------------------


def pipeline_service(source: str, pool: Sequence[GenRequest],
                     duration: float) -> list[tuple[float, int]]:  # fmt: skip
    """transformers.pipeline("text-generation") on the pool's requests in order, one at a
    time, for `duration` seconds (at least 3 requests): (seconds, tokens) each. run() calls it
    in a process of its own."""
    import torch
    from transformers import pipeline

    generator = pipeline("text-generation", model=source, tokenizer=source, device=-1,
                         dtype=torch.float32)  # fmt: skip
    eos = getattr(generator.tokenizer, "eos_token_id", None)

    def run(request: GenRequest) -> None:
        generator(request.prompt, max_new_tokens=request.max_new_tokens,
                  min_new_tokens=request.max_new_tokens, do_sample=False,
                  return_full_text=False, pad_token_id=eos)  # fmt: skip

    run(GenRequest(pool[0].prompt, 0, 8))  # warm-up
    served: list[tuple[float, int]] = []
    stop = time.perf_counter() + duration
    while time.perf_counter() < stop or len(served) < 3:
        request = pool[len(served) % len(pool)]
        started = time.perf_counter()
        run(request)
        served.append((time.perf_counter() - started, request.max_new_tokens))
    return served


def one_at_a_time(served: Sequence[tuple[float, int]], streams: int, duration: float,
                  stagger: float) -> dict[str, Any]:  # fmt: skip
    """Closed-loop staggered streams (as the HTTP rows) against one worker serving requests
    one at a time, first come first served, each taking its measured (seconds, tokens) in
    turn; a request's tokens all arrive at its end (no streaming), so TTFT is wait + whole
    generation. Same window and figures as the HTTP rows."""
    starts = offsets(streams, stagger)
    window = (max(starts), duration)
    arrivals = [(start, stream) for stream, start in enumerate(starts)]
    heapq.heapify(arrivals)
    free_at, k, tokens, ttft = 0.0, 0, 0, []
    while arrivals:
        arrived, stream = heapq.heappop(arrivals)
        if arrived >= duration:
            continue  # the stream stops sending
        seconds, count = served[k % len(served)]
        k += 1
        end = max(arrived, free_at) + seconds
        free_at = end
        if arrived >= window[0]:
            ttft.append(end - arrived)
        if window[0] <= end <= window[1]:
            tokens += count
        heapq.heappush(arrivals, (end, stream))
    ttft.sort()
    length = max(window[1] - window[0], 1e-9)
    return {"engine": "torch", "mode": "pipeline", "streams": streams, "simulated": streams > 1,
            "window_s": length, "tokens": tokens, "tokens_per_s": tokens / length,
            "requests": len(ttft), "errors": 0,
            "ttft_p50_ms": percentile(ttft, 50) * 1000,
            "ttft_p90_ms": percentile(ttft, 90) * 1000,
            "ttft_p99_ms": percentile(ttft, 99) * 1000}  # fmt: skip


# -- report -------------------------------------------------------------------------------


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the rows and, per engine, whether the aims hold; the summary."""
    print("\ngeneration (POST /v1/generate, streamed; pipeline: one at a time, TTFT = whole)")
    print(f"{'engine':>8} {'mode':>10} {'streams':>7} {'tokens/s':>9} {'TTFT p50':>9} "
          f"{'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} {'step ms':>7} {'rows':>5} "
          f"{'errors':>6}")  # fmt: skip
    modes = {"continuous": 0, "static": 1, "pipeline": 2}

    def shown(row: dict[str, Any], key: str, width: int) -> str:
        value = row.get(key)
        return f"{value:{width}.1f}" if value is not None else f"{'-':>{width}}"

    for row in sorted(rows, key=lambda r: (r["engine"], modes.get(r["mode"], 3), r["streams"])):
        print(f"{row['engine']:>8} {row['mode']:>10} {row['streams']:>7} "
              f"{row['tokens_per_s']:9.1f} {row['ttft_p50_ms']:9.1f} {row['ttft_p99_ms']:9.1f} "
              f"{shown(row, 'itl_p50_ms', 8)} {shown(row, 'itl_p99_ms', 8)} "
              f"{shown(row, 'decode_step_ms', 7)} {shown(row, 'rows_per_step', 5)} "
              f"{row['errors']:6d}")  # fmt: skip
    summary: dict[str, Any] = {
        "aims": [f"at the most streams, continuous tokens/s >= {AIM_SPEEDUP:g}x static's",
                 f"TTFT p50 at the most streams within {AIM_TTFT_STEPS:g} decoder steps of "
                 "the idle (1 stream) TTFT p50, continuous"],
        "engines": {},
    }  # fmt: skip
    by_key = {(r["engine"], r["mode"], r["streams"]): r for r in rows}
    served = [r for r in rows if r["mode"] != "pipeline"]
    if not served:
        return summary
    most = max(r["streams"] for r in served)
    fewest = min(r["streams"] for r in served)
    for engine in sorted({r["engine"] for r in served}):
        entry: dict[str, Any] = {}
        continuous = by_key.get((engine, "continuous", most))
        static = by_key.get((engine, "static", most))
        pipe = by_key.get(("torch", "pipeline", most))
        if continuous and static and static["tokens_per_s"] > 0:
            speedup = continuous["tokens_per_s"] / static["tokens_per_s"]
            met = speedup >= AIM_SPEEDUP and continuous["errors"] == 0
            entry.update(speedup_vs_static=speedup, speedup_aim_met=met)
            versus = (f", {continuous['tokens_per_s'] / pipe['tokens_per_s']:.2f}x the pipeline"
                      if pipe and pipe["tokens_per_s"] > 0 else "")  # fmt: skip
            print(f"aim ({engine}, {most} streams): continuous {continuous['tokens_per_s']:.1f} "
                  f"tokens/s = {speedup:.2f}x static's {static['tokens_per_s']:.1f}{versus}: "
                  f"{'met' if met else 'NOT met'}")  # fmt: skip
        idle = by_key.get((engine, "continuous", fewest))
        if continuous and idle and fewest < most:
            step = continuous["decode_step_ms"]
            extra = continuous["ttft_p50_ms"] - idle["ttft_p50_ms"]
            met = extra <= AIM_TTFT_STEPS * step
            entry.update(idle_ttft_p50_ms=idle["ttft_p50_ms"],
                         loaded_ttft_p50_ms=continuous["ttft_p50_ms"], decode_step_ms=step,
                         ttft_extra_steps=extra / step if step else float("nan"),
                         ttft_aim_met=met)  # fmt: skip
            print(f"aim ({engine}, {most} streams): TTFT p50 {continuous['ttft_p50_ms']:.1f} ms "
                  f"vs idle {idle['ttft_p50_ms']:.1f} ms: +{extra:.1f} ms = "
                  f"{entry['ttft_extra_steps']:.2f} decoder steps of {step:.1f} ms: "
                  f"{'met' if met else 'NOT met'}")  # fmt: skip
        summary["engines"][engine] = entry
    return summary


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """tokens/s and TTFT p50 against streams, a line per engine and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    colours = {engine: f"C{i}" for i, engine in enumerate(ENGINES)}
    for engine, mode in sorted({(r["engine"], r["mode"]) for r in rows}):
        points = sorted((r["streams"], r["tokens_per_s"], r["ttft_p50_ms"]) for r in rows
                        if (r["engine"], r["mode"]) == (engine, mode))  # fmt: skip
        xs = [p[0] for p in points]
        style = {"continuous": "-", "static": "--", "pipeline": ":"}.get(mode, "-.")
        look = {"color": colours.get(engine), "marker": "o", "label": f"{engine} {mode}"}
        left.plot(xs, [p[1] for p in points], style, **look)
        right.plot(xs, [p[2] for p in points], style, **look)
    for ax, label in ((left, "tokens/s"), (right, "time to first token p50 (ms)")):
        ax.set_xscale("log", base=2)
        ticks = sorted({r["streams"] for r in rows})
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=7)
    fig.suptitle(f"GPT-2 {GPT2['n_layer']}x{GPT2['n_embd']} (random), prompts "
                 f"{PROMPT_TOKENS[0]}-{PROMPT_TOKENS[1]} tokens, {NEW_TOKENS[0]}-"
                 f"{NEW_TOKENS[1]} new tokens, streamed", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the run ------------------------------------------------------------------------------


def run(duration: float = DURATION_S, rounds: int = 1, streams: Sequence[int] = STREAMS,
        engines: Sequence[str] | None = None, stagger: float = STAGGER_S,
        pipeline: bool = True) -> dict[str, Any]:  # fmt: skip
    """The pipeline baseline, then the HTTP rows on one server: the results' generate part.
    engines None: each of ENGINES that loads."""
    from transformers import AutoTokenizer

    source = str(gpt2_dir())
    pool = workload(AutoTokenizer.from_pretrained(source))
    wanted = list(engines) if engines else list(ENGINES)
    available, skipped = loadable(source, wanted)
    if engines and skipped:
        raise SystemExit(f"engines asked for but not loadable: {skipped}")
    rows: list[dict[str, Any]] = []
    if pipeline:
        # in a process of its own, as the server is: this one only runs the client
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as worker:
            served = worker.submit(pipeline_service, source, pool, duration).result()
        rows += [one_at_a_time(served, count, duration, stagger) for count in streams]
        print(
            f"pipeline: {len(served)} requests one at a time, "
            f"{sum(t for _, t in served) / sum(s for s, _ in served):.1f} tokens/s",
            flush=True,
        )
    if available:
        models = [model_entry(e, s, source) for e in available for s in SCHEDULINGS]
        with serve(
            models, cache_env(), NLP_SERVE_GENERATE_TIMEOUT_MS=str(int(DEADLINE_S * 1000))
        ) as server:
            rows += measure_http(server.base, available, pool, streams, duration, stagger,
                                 rounds, server.process.pid)  # fmt: skip
    summary = report(rows)
    return {
        "model": {"kind": "GPT-2, random weights", **GPT2, "source": Path(source).name,
                  "tokenizer": "byte-level BPE, 2000 tokens (tests.fixtures.tiny_models)"},
        "workload": {"prompt_tokens": PROMPT_TOKENS, "max_new_tokens": NEW_TOKENS,
                     "pool": len(pool), "temperature": 0.0, "ignore_eos": True,
                     "stream": True, "streams": list(streams), "duration_s": duration,
                     "stagger_s": stagger, "arrivals": "closed-loop streams, each starting "
                     "at a seeded uniform offset in [0, stagger)",
                     "mean_prompt_tokens": statistics.mean(r.prompt_tokens for r in pool),
                     "mean_new_tokens": statistics.mean(r.max_new_tokens for r in pool)},
        "server": {"batching": {"max_batch_size": MAX_RUNNING}, "options": OPTIONS,
                   "generate_timeout_ms": int(DEADLINE_S * 1000)},
        "engines": {"benchmarked": available, "skipped": skipped},
        "rows": rows,
        "summary": summary,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help=f"seconds per row (default {DURATION_S:g}; --quick 4)",
    )
    parser.add_argument(
        "--stagger",
        type=float,
        default=None,
        help=f"streams start within this many seconds (default {STAGGER_S:g}; --quick 0.5)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument(
        "--streams",
        type=int,
        nargs="+",
        default=None,
        help="concurrent streams, each in turn (default 1 8 32; --quick 1 8)",
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES,
        default=None,
        help="default: each that loads (--quick: torch)",
    )
    parser.add_argument(
        "--no-pipeline", action="store_true", help="leave out the transformers pipeline baseline"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: torch, 1 and 8 streams, 4 s rows"
    )
    parser.add_argument("--no-save", action="store_true", help="print only (smoke runs)")
    args = parser.parse_args(argv)  # fmt: skip
    quick = args.quick
    args.duration = args.duration or (4.0 if quick else DURATION_S)
    args.stagger = args.stagger if args.stagger is not None else (0.5 if quick else STAGGER_S)
    args.streams = args.streams or ([1, 8] if quick else list(STREAMS))
    args.engines = args.engines or (["torch"] if quick else None)
    if args.stagger >= args.duration:
        parser.error("--stagger must be shorter than --duration (the window is what is left)")
    started = time.monotonic()
    results = run(args.duration, args.rounds, args.streams, args.engines, args.stagger,
                  not args.no_pipeline)  # fmt: skip
    results.update(machine=machine(), args=vars(args), elapsed_s=time.monotonic() - started)
    if args.no_save:
        print(f"done in {results['elapsed_s']:.0f} s (not saved)")
        return
    path = result_path("generate")
    picture = plot(results["rows"], path.with_name(f"{path.stem}.png"))
    results["plots"] = [str(picture.relative_to(ROOT))]
    save("generate", results, path)
    print(f"saved {path} and {picture} in {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
