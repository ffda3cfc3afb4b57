"""The benchmark's own arithmetic: server CPU per request."""

from __future__ import annotations

import math
import os
import time

from bench.common import process_cpu_s, server_cpu_ms_per_request


def scrape_with(count: float, model: str = "m") -> str:
    series = f'route="/v1/sentiment",model="{model}",status="200"'
    return (
        f"nlp_serve_request_duration_seconds_sum{{{series}}} {count * 0.01}\n"
        f"nlp_serve_request_duration_seconds_count{{{series}}} {count}\n"
        f'nlp_serve_request_duration_seconds_count{{model="other",status="200"}} 999\n'
    )


def test_cpu_per_request_divides_by_the_models_answered_requests() -> None:
    ms = server_cpu_ms_per_request(10.0, 12.5, scrape_with(100), scrape_with(600), "m")
    assert ms == 5.0  # 2.5 s of CPU over 500 requests of model m; "other" not counted


def test_no_request_answered_is_not_a_number() -> None:
    assert math.isnan(server_cpu_ms_per_request(1.0, 2.0, scrape_with(7), scrape_with(7), "m"))


def test_process_cpu_counts_this_process_busy_time() -> None:
    before = process_cpu_s(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert process_cpu_s(os.getpid()) - before >= 0.03  # clock ticks are 10 ms
