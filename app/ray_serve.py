"""nlp-serve as a Ray Serve application: each replica is the whole FastAPI app (`create_app`),
with its own registry and batchers, behind Ray Serve's HTTP proxy.

    serve run deploy/ray/serve.yaml            # the config: replicas, CPUs, threads, autoscaling
    serve run app.ray_serve:build models=/app/models/offline.yaml   # quick start, defaults

The app is built on each replica (never pickled from the driver), after the replica's own
environment (runtime_env env_vars: NLP_SERVE_TORCH_THREADS, OMP_NUM_THREADS) is in place; its
lifespan loads and warms the models before Ray routes it a request. Every /metrics series
carries `replica=<Ray replica id>` (NLP_SERVE_REPLICA); see docs/scaling.md.

Ray's proxy, not app/server.py, does the HTTP here: of the connection limits of `nlp-serve
serve`, only the body read timeout can be kept, in the app (`BodyReadDeadline`); docs/scaling.md
says what the proxy provides instead of the others and what it does not.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from app.auth import check_exposure
from app.cli import SERVING_ENVIRONMENT
from app.main import create_app
from app.middleware import BodyReadDeadline
from app.settings import Settings

# Replica defaults that the Serve config (deploy/ray/serve.yaml) normally sets. Ray's default
# max_ongoing_requests (5) would hand a replica at most 5 requests at a time: its batcher
# could never form a batch larger than 5. 64 is twice the catalog's default max_batch_size,
# so one batch runs while the next one forms.
MAX_ONGOING_REQUESTS = 64


def check_replica_settings(settings: Settings) -> None:
    """What a replica refuses to start with."""
    # Ray's proxy binds http_options.host; NLP_SERVE_HOST says the same to the replica
    # (the RayService sets 0.0.0.0), so a replica without keys refuses it here too.
    check_exposure(settings)
    if settings.grpc_port is not None:
        raise ValueError(
            "NLP_SERVE_GRPC_PORT is for `nlp-serve serve`: Ray Serve replicas share one port "
            "through Ray's own proxy. Unset it here; serve gRPC with `nlp-serve serve` or "
            "Ray Serve's gRPC proxy"
        )


@serve.deployment(
    name="nlp-serve",
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=5,
    graceful_shutdown_timeout_s=35,
)
@serve.ingress()
class NLPServe:
    """One replica: settings from the replica's environment, overridden by `settings`."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        for name, value in SERVING_ENVIRONMENT.items():  # before torch loads, as `serve` does
            os.environ.setdefault(name, value)
        self._overrides = dict(settings or {})
        self._app: FastAPI | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        replica = serve.get_replica_context().replica_id.unique_id
        settings = Settings(**{"replica": replica, **self._overrides})
        check_replica_settings(settings)
        app = create_app(settings)
        app.add_middleware(BodyReadDeadline, seconds=settings.request_read_timeout_seconds)
        self._app = app
        return app

    def check_health(self) -> None:
        """Ray restarts a replica whose health check raises: one whose registry stopped."""
        if self._app is not None and self._app.state.registry.draining:
            raise RuntimeError("nlp-serve replica is shutting down")


def build(args: dict[str, Any]) -> Application:
    """The application builder `serve run` / a Serve config's import_path calls.

    `args` are settings overrides (`models`, `torch_threads`, ...), given as `key=value` on
    the `serve run` command line or under `args:` in the config.
    """
    return NLPServe.bind(args)  # type: ignore[attr-defined,no-any-return]
