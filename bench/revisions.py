"""Two revisions of nlp-serve side by side in one run: did a change slow the service down?

Each revision is checked out into a temporary git worktree and served from there (same
virtual environment, same weights, same catalog); measurements alternate between the two,
round by round, so drift of the machine hits both alike. Workloads: the batching benchmark's
PyTorch fp32 classifier and the backend benchmark's ONNX int8 classifier, on /v1/sentiment
with ~20-word inputs, at concurrency 32 (throughput) and 1 (latency).

    .venv/bin/python -m bench.revisions --before 93afa8d            # after: the working tree
    .venv/bin/python -m bench.revisions --before v1 --after v2 --rounds 3 --duration 6
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
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
    minilm_classifier_dir,
    save,
    sentences,
    serve,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "torch-fp32": {"backend": "torch", "precision": "fp32"},
    "onnx-int8": {"backend": "onnx", "precision": "int8", "export": True},
}
CONCURRENCY = (32, 1)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--after", default=None, help="git revision (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measurement")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY))
    args = parser.parse_args()
    configs = {name: CONFIGS[name] for name in args.configs}
    model_dir = str(minilm_classifier_dir())
    bodies = [{"inputs": t} for t in sentences(256, words=20)]
    names = {"before": args.before, "after": args.after or "working tree"}
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    with ExitStack() as stack:
        servers = {}
        for side, revision in (("before", args.before), ("after", args.after)):
            root = stack.enter_context(checkout(revision))
            for config, fields in configs.items():
                model = {"name": config, "task": "sentiment", "source": model_dir,
                         "device": "cpu", "batching": BATCHED, **fields}  # fmt: skip
                servers[side, config] = stack.enter_context(
                    serve([model], root=root, NLP_SERVE_ONNX_CACHE_DIR=str(CACHE / "onnx"))
                ).base
        for round_ in range(args.rounds):
            for config in configs:
                for concurrency in args.concurrency:
                    for side in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                        url = f"{servers[side, config]}/v1/sentiment"
                        result = load(url, bodies, concurrency, args.duration)
                        results.setdefault((side, config, concurrency), []).append(result)
                        print(f"round {round_ + 1} {config:>10} c={concurrency:<2} {side:>6}: "
                              f"{result['rps']:7.1f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                              f"errors {int(result['errors'])}", flush=True)  # fmt: skip
    summary = {}
    print(f"\nafter ({names['after']}) / before ({names['before']}), medians of "
          f"{args.rounds} rounds:")  # fmt: skip
    for config in configs:
        for concurrency in args.concurrency:
            before, after = (
                {k: statistics.median(r[k] for r in results[side, config, concurrency])
                 for k in ("rps", "p50_ms")}
                for side in ("before", "after")
            )  # fmt: skip
            rps, p50 = after["rps"] / before["rps"], after["p50_ms"] / before["p50_ms"]
            summary[f"{config} c={concurrency}"] = {
                "before": before,
                "after": after,
                "rps_ratio": rps,
                "p50_ratio": p50,
            }
            print(f"  {config:>10} c={concurrency:<2} req/s {rps:5.3f}x  p50 {p50:5.3f}x "
                  f"({before['rps']:.1f} -> {after['rps']:.1f} req/s)")  # fmt: skip
    path = save("revisions", {"machine": machine(), "revisions": names, "summary": summary,
                              "duration_s": args.duration, "rounds": args.rounds})  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
