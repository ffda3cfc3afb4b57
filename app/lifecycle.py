"""Graceful drain on SIGTERM, for a service behind a load balancer.

uvicorn alone closes its listener on SIGTERM, so a load balancer learns of the shutdown from
refused connections. Instead: readiness answers 503 at once and for `drain_seconds` while new
requests are still served (the balancer takes the instance out), then uvicorn's own graceful
shutdown runs (listener closes, in-flight requests finish within the request timeout plus
`shutdown_grace_seconds`, the lifespan closes the models) and the process exits 0.

It hooks the running uvicorn server through the SIGTERM handler uvicorn installed (a bound
`Server.handle_exit`), in every worker process; under anything else (tests in-process, Ray
Serve) nothing is installed and shutdown is the host's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

from app.registry.registry import Registry

logger = logging.getLogger(__name__)


def _uvicorn_server() -> Any | None:
    """The uvicorn Server whose handle_exit is the current SIGTERM handler, if any."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return server if server is not None and hasattr(server, "should_exit") else None


def install_drain_on_sigterm(registry: Registry, drain_seconds: float) -> bool:
    """Make SIGTERM drain first; True when installed (we run under uvicorn's main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    server = _uvicorn_server()
    if server is None:
        return False
    loop = asyncio.get_running_loop()

    def stop() -> None:
        logger.info("drain over: closing the listener, finishing in-flight requests")
        # should_exit, not handle_exit: uvicorn re-raises a signal it handled once it has shut
        # down (the process would die of SIGTERM); this way it exits 0.
        server.should_exit = True

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if registry.draining:  # a second SIGTERM: stop draining now
            loop.call_soon_threadsafe(stop)
            return
        registry.draining = True
        logger.info(
            "SIGTERM: /readyz answers 503 and requests are still served for %.1f s", drain_seconds
        )
        loop.call_soon_threadsafe(loop.call_later, drain_seconds, stop)

    signal.signal(signal.SIGTERM, on_sigterm)
    return True
