"""Make InferenceClient calls with whichever huggingface_hub this interpreter has; print what
the client parsed.

Run as a script by test_hf_client_generations.py, in each client generation's own venv, so it
imports only huggingface_hub, numpy and the standard library. Reads a JSON object on stdin:
{"api_key": "...", "calls": {"name": {"method": "...", "args": [...], "kwargs": {...}}}}.
Every call is made with InferenceClient and with AsyncInferenceClient; prints one JSON object:
{"version", "user_agent", "sync": {name: parsed}, "async": {name: parsed}}. A parsed answer is
plain JSON: the client's typed objects as {"_type": class name, field: value, ...}, numpy
arrays as {"_type": "ndarray", "dtype", "values"}, and a raised error as {"_error": class name,
"status", "message"}.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import huggingface_hub
import numpy as np
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.utils._headers import build_hf_headers  # the same in 0.36, 1.x, 2.x

Calls = dict[str, dict[str, Any]]


def plain(value: Any) -> Any:
    """The client's answer as JSON, keeping the names of its types."""
    if isinstance(value, np.ndarray):
        return {"_type": "ndarray", "dtype": str(value.dtype), "values": value.tolist()}
    if isinstance(value, dict):
        typed = {"_type": type(value).__name__} if type(value) is not dict else {}
        return {**typed, **{str(k): plain(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def failure(error: Exception) -> dict[str, Any]:
    """What the client raised: its class, the HTTP status it carries, its message."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None) or getattr(error, "status", None)
    return {"_error": type(error).__name__, "status": status, "message": str(error)}


def call_sync(client: InferenceClient, call: dict[str, Any]) -> Any:
    try:
        return plain(getattr(client, call["method"])(*call["args"], **call["kwargs"]))
    except Exception as error:  # the test compares it; a crash here would hide the others
        return failure(error)


async def call_async(client: AsyncInferenceClient, call: dict[str, Any]) -> Any:
    try:
        return plain(await getattr(client, call["method"])(*call["args"], **call["kwargs"]))
    except Exception as error:
        return failure(error)


async def run_async(api_key: str, calls: Calls) -> dict[str, Any]:
    async with AsyncInferenceClient(api_key=api_key, timeout=30) as client:
        return {name: await call_async(client, call) for name, call in calls.items()}


def main() -> None:
    request = json.load(sys.stdin)
    api_key, calls = request["api_key"], request["calls"]
    client = InferenceClient(api_key=api_key, timeout=30)
    report = {
        "version": huggingface_hub.__version__,
        "user_agent": build_hf_headers(token=api_key)["user-agent"],
        "sync": {name: call_sync(client, call) for name, call in calls.items()},
        "async": asyncio.run(run_async(api_key, calls)),
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
