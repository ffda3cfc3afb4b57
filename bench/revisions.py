"""Two revisions of nlp-serve side by side in one run: did a change slow the service down?

Each revision is checked out into a temporary git worktree and served from there, with the
same weights and catalog, and each side's own interpreter where the dependencies changed
(`--before-python`: the old virtual environment's python). Exports go to one cache per side,
so neither reads the other's. Measurements alternate between the two, round by round, so
drift of the machine hits both alike. One model at a time is served on each side.

Workloads: every backend path on the MiniLM-sized classifier (/v1/sentiment, ~20-word inputs,
concurrency 32 for throughput and 1 for latency), and seq2seq generation on the Marian-sized
model (/v1/summarize, fixed output length, concurrency 8).

    .venv/bin/python -m bench.revisions --before 93afa8d            # after: the working tree
    .venv/bin/python -m bench.revisions --before v1 --after v2 --rounds 3 --duration 6
    .venv/bin/python -m bench.revisions --before 445ac7f --before-python ../old-venv/bin/python
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    BATCHED,
    CACHE,
    ROOT,
    load,
    machine,
    marian_sized_seq2seq_dir,
    minilm_classifier_dir,
    save,
    sentences,
    serve,
)

ENCODER_CONFIGS: dict[str, dict[str, Any]] = {
    "torch-fp32": {"backend": "torch", "precision": "fp32"},
    "onnx-fp32": {"backend": "onnx", "precision": "fp32", "export": True},
    "onnx-O2": {"backend": "onnx", "precision": "fp32", "export": True, "optimize": "O2"},
    "onnx-int8": {"backend": "onnx", "precision": "int8", "export": True},
    "openvino-fp32": {"backend": "openvino", "precision": "fp32", "export": True},
    "openvino-int8": {"backend": "openvino", "precision": "int8", "export": True},
}
GENERATION_CONFIGS: dict[str, dict[str, Any]] = {
    "gen-torch": {"backend": "torch"},
    "gen-onnx": {"backend": "onnx", "export": True},
}
CONFIGS = {**ENCODER_CONFIGS, **GENERATION_CONFIGS}
CONCURRENCY = (32, 1)
GEN_CONCURRENCY = 8
GEN_TOKENS = 32


@contextmanager
def checkout(revision: str | None) -> Iterator[Path]:
    """A worktree of `revision`, removed afterwards; None is this checkout as it is."""
    if revision is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="nlp-serve-rev-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                           check=False, capture_output=True)  # fmt: skip


def workload(config: str) -> tuple[dict[str, Any], str, list[dict[str, Any]], tuple[int, ...]]:
    """(catalog entry, route, bodies, concurrencies) for one config."""
    if config in GENERATION_CONFIGS:
        model = {"name": config, "task": "summarize", "source": str(marian_sized_seq2seq_dir()),
                 "device": "cpu", "batching": {"max_batch_size": 8, "max_wait_ms": 2},
                 **CONFIGS[config]}  # fmt: skip
        fixed = {"min_length": GEN_TOKENS, "max_length": GEN_TOKENS}
        bodies = [{"inputs": t, **fixed} for t in sentences(64, words=60, seed=1)]
        return model, "/v1/summarize", bodies, (GEN_CONCURRENCY,)
    model = {"name": config, "task": "sentiment", "source": str(minilm_classifier_dir()),
             "device": "cpu", "batching": BATCHED, **CONFIGS[config]}  # fmt: skip
    bodies = [{"inputs": t} for t in sentences(256, words=20)]
    return model, "/v1/sentiment", bodies, CONCURRENCY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--after", default=None, help="git revision (default: the working tree)")
    parser.add_argument("--before-python", default=sys.executable,
                        help="interpreter that serves the before revision")  # fmt: skip
    parser.add_argument("--after-python", default=sys.executable,
                        help="interpreter that serves the after revision")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measurement")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args()
    names = {"before": args.before, "after": args.after or "working tree"}
    pythons = {"before": args.before_python, "after": args.after_python}
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    with ExitStack() as trees:
        revisions = {"before": args.before, "after": args.after}
        roots = {side: trees.enter_context(checkout(rev)) for side, rev in revisions.items()}
        for config in args.configs:
            model, route, bodies, concurrencies = workload(config)
            with ExitStack() as stack:
                servers = {
                    side: stack.enter_context(serve(
                        [model], root=roots[side], python=pythons[side],
                        NLP_SERVE_ONNX_CACHE_DIR=str(CACHE / f"onnx-{side}"),
                        NLP_SERVE_OPENVINO_CACHE_DIR=str(CACHE / f"openvino-{side}"),
                    )).base
                    for side in ("before", "after")
                }  # fmt: skip
                for round_ in range(args.rounds):
                    for concurrency in concurrencies:
                        order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
                        for side in order:
                            result = load(servers[side] + route, bodies, concurrency, args.duration)
                            results.setdefault((side, config, concurrency), []).append(result)
                            print(f"round {round_ + 1} {config:>13} c={concurrency:<2} {side:>6}: "
                                  f"{result['rps']:7.1f} req/s  p50 {result['p50_ms']:7.2f} ms  "
                                  f"errors {int(result['errors'])}", flush=True)  # fmt: skip
    summary = {}
    print(f"\nafter ({names['after']}) / before ({names['before']}), medians of "
          f"{args.rounds} rounds:")  # fmt: skip
    for side_config_concurrency in sorted({(c, n) for _, c, n in results}, key=str):
        config, concurrency = side_config_concurrency
        before, after = (
            {k: statistics.median(r[k] for r in results[side, config, concurrency])
             for k in ("rps", "p50_ms", "errors")}
            for side in ("before", "after")
        )  # fmt: skip
        rps, p50 = after["rps"] / before["rps"], after["p50_ms"] / before["p50_ms"]
        summary[f"{config} c={concurrency}"] = {
            "before": before,
            "after": after,
            "rps_ratio": rps,
            "p50_ratio": p50,
        }
        print(f"  {config:>13} c={concurrency:<2} req/s {rps:5.3f}x  p50 {p50:5.3f}x "
              f"({before['rps']:.1f} -> {after['rps']:.1f} req/s)")  # fmt: skip
    path = save("revisions", {"machine": machine(), "revisions": names, "summary": summary,
                              "pythons": pythons, "duration_s": args.duration,
                              "rounds": args.rounds})  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
