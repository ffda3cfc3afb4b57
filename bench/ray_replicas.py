"""Ray Serve: requests/s of 1 replica (2 CPUs, 2 threads) vs 2 replicas (1 CPU, 1 thread each)
on this machine's local Ray cluster (127.0.0.1), /v1/embed on MiniLM (ONNX fp32, the offline
catalog's embed model), closed loop at concurrency 32. About 3 minutes.

    .venv/bin/python -m bench.ray_replicas

Prints one JSON line per configuration (bench.loadgen's figures). The load generator shares
the cores with the replicas, as it would on any one machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]
TEXT = "The quick brown fox jumps over the lazy dog near the quiet river bank at dawn."


def main() -> None:
    import ray
    from ray import serve

    from app.ray_serve import NLPServe

    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    offline = yaml.safe_load((ROOT / "models" / "offline.yaml").read_text())
    embed = next(m for m in offline["models"] if m["name"] == "minilm-embed")
    catalog = work / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"models": [embed]}))
    bodies = work / "bodies.json"
    bodies.write_text(json.dumps([{"inputs": f"{TEXT} {i}"} for i in range(256)]))
    settings = {"models": str(catalog), "onnx_cache_dir": str(ROOT / ".cache" / "onnx")}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)  # fmt: skip
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for replicas, cpus in ((1, 2), (2, 1)):
            env = {"NLP_SERVE_TORCH_THREADS": str(cpus), "OMP_NUM_THREADS": str(cpus),
                   "NLP_SERVE_TOKENIZE_THREADS": "1"}  # fmt: skip
            app = NLPServe.options(  # type: ignore[attr-defined]
                num_replicas=replicas,
                max_ongoing_requests=128,
                ray_actor_options={"num_cpus": cpus, "runtime_env": {"env_vars": env}},
            ).bind(settings)
            serve.run(app, name="nlp-serve", route_prefix="/")
            out = subprocess.run(
                [sys.executable, "-m", "bench.loadgen", "--url",
                 f"http://127.0.0.1:{port}/v1/embed", "--bodies", str(bodies),
                 "--concurrency", "32", "--duration", "20", "--warmup", "64"],
                cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps({"replicas": replicas, "num_cpus": cpus, **result}), flush=True)
            serve.delete("nlp-serve")
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
