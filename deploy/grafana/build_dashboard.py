"""Writes dashboards/nlp-serve.json. Edit the panels here, run it, commit both.

    python deploy/grafana/build_dashboard.py
A test checks that the JSON is what this script writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards" / "nlp-serve.json"
RATE = "$__rate_interval"
MODEL = 'model=~"$model"'


def _quantiles(
    metric: str, by: str, selector: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in qs
    ]


def _mean(metric: str, by: str, selector: str) -> tuple[str, str]:
    return (
        f"sum by ({by}) (rate({metric}_sum{{{selector}}}[{RATE}]))"
        f" / sum by ({by}) (rate({metric}_count{{{selector}}}[{RATE}]))",
        f"mean {{{{{by}}}}}",
    )


# (title, unit, [(expr, legend)], width); GPU panels may be empty on CPU-only machines.
Panel = tuple[str, str, list[tuple[str, str]], int]
PANELS: list[Panel] = [
    ("Requests/s by protocol, route and status", "reqps",
     [(f"sum by (protocol, route, status) (rate(nlp_serve_requests_total{{{MODEL}}}[{RATE}]))",
       "{{protocol}} {{route}} {{status}}")], 12),
    ("Error ratio (5xx) by route", "percentunit",
     [(f'(sum by (route) (rate(nlp_serve_requests_total{{status=~"5..", {MODEL}}}[{RATE}]))'
       f" or sum by (route) (rate(nlp_serve_requests_total{{{MODEL}}}[{RATE}])) * 0)"
       f" / sum by (route) (rate(nlp_serve_requests_total{{{MODEL}}}[{RATE}]))", "{{route}}")], 12),
    ("Latency p50 / p95 / p99 by route", "s",
     _quantiles("nlp_serve_request_duration_seconds", "route", MODEL), 12),
    ("In-flight requests", "short", [("sum(nlp_serve_inflight_requests)", "in flight")], 12),
    ("Queue wait p50 / p95 / p99 by model", "s",
     _quantiles("nlp_serve_queue_wait_seconds", "model", MODEL), 12),
    ("Queue depth by model (of max_queue)", "short",
     [(f"sum by (model) (nlp_serve_queue_depth{{{MODEL}}})", "{{model}} depth"),
      (f"max by (model) (nlp_serve_queue_capacity{{{MODEL}}})", "{{model}} capacity")], 12),
    ("Batch size (items)", "short",
     [*_quantiles("nlp_serve_batch_size", "model", MODEL)[::2],
      _mean("nlp_serve_batch_size", "model", MODEL)], 12),
    ("Batch tokens (padded)", "short",
     [*_quantiles("nlp_serve_batch_tokens", "model", MODEL)[::2],
      _mean("nlp_serve_batch_tokens", "model", MODEL)], 12),
    ("Stage time p50 (tokenize / forward / postprocess)", "s",
     [(f"histogram_quantile(0.5, sum by (le, stage) (rate("
       f"nlp_serve_inference_duration_seconds_bucket{{{MODEL}, "
       f"stage=~\"tokenize|forward|postprocess\"}}[{RATE}])))", "{{stage}}")], 12),
    ("Stage time mean by model and stage", "s",
     [_mean("nlp_serve_inference_duration_seconds", "model, stage", MODEL)], 12),
    ("Items dropped/s by reason", "short",
     [(f"sum by (model, reason) (rate(nlp_serve_items_dropped_total{{{MODEL}}}[{RATE}]))",
       "{{model}} {{reason}}")], 12),
    ("Models loaded", "short",
     [(f"sum by (model, backend, device) (nlp_serve_model_loaded{{{MODEL}}})",
       "{{model}} ({{backend}} on {{device}})")], 12),
    ("Process CPU (cores)", "short",
     [(f'rate(process_cpu_seconds_total{{job="nlp-serve"}}[{RATE}])', "{{instance}}")], 8),
    ("Process memory (RSS) and open fds", "bytes",
     [('process_resident_memory_bytes{job="nlp-serve"}', "RSS {{instance}}"),
      ('process_open_fds{job="nlp-serve"}', "fds {{instance}}")], 8),
    ("GPU memory", "bytes",
     [("sum by (device, kind) (nlp_serve_gpu_memory_bytes)", "{{device}} {{kind}}")], 8),
]  # fmt: skip

# Causal LMs (task generate, continuous batching): empty while no generate model is served.
GENERATION = 'stage=~"prefill|decode_step", ' + MODEL
GENERATION_PANELS: list[Panel] = [
    ("Time to first token p50 / p95 by model", "s",
     _quantiles("nlp_serve_time_to_first_token_seconds", "model", MODEL, (0.5, 0.95)), 12),
    ("Inter-token latency p50 / p95 by model", "s",
     _quantiles("nlp_serve_inter_token_seconds", "model", MODEL, (0.5, 0.95)), 12),
    ("Tokens/s by model (generated, prompt)", "short",
     [(f"sum by (model) (rate(nlp_serve_generated_tokens_total{{{MODEL}}}[{RATE}]))",
       "{{model}} generated"),
      (f"sum by (model) (rate(nlp_serve_prompt_tokens_total{{{MODEL}}}[{RATE}]))",
       "{{model}} prompt")], 8),
    ("Sequences running / waiting by model", "short",
     [(f"sum by (model) (nlp_serve_sequences_running{{{MODEL}}})", "{{model}} running"),
      (f"sum by (model) (nlp_serve_sequences_waiting{{{MODEL}}})", "{{model}} waiting")], 8),
    ("KV cache reserved (of kv_cache_tokens) by model", "percentunit",
     [(f"sum by (model) (nlp_serve_kv_cache_tokens{{{MODEL}}})"
       f" / sum by (model) (nlp_serve_kv_cache_capacity_tokens{{{MODEL}}})", "{{model}}")], 8),
    ("Sequences finished/s by reason", "short",
     [(f"sum by (model, reason) (rate(nlp_serve_sequences_finished_total{{{MODEL}}}[{RATE}]))",
       "{{model}} {{reason}}")], 12),
    ("Prefill and decode-step time p50 by model", "s",
     [(f"histogram_quantile(0.5, sum by (le, model, stage) (rate("
       f"nlp_serve_inference_duration_seconds_bucket{{{GENERATION}}}[{RATE}])))",
       "{{model}} {{stage}}")], 12),
]  # fmt: skip

# (row title, its panels): the first has no row header.
SECTIONS: list[tuple[str | None, list[Panel]]] = [
    (None, PANELS),
    ("Text generation", GENERATION_PANELS),
]


def panel(ident: int, title: str, unit: str, targets: list[tuple[str, str]], width: int,
          x: int, y: int) -> dict[str, Any]:  # fmt: skip
    return {
        "id": ident,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def row(ident: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": ident,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
    }


def layout() -> list[dict[str, Any]]:
    """Panels left to right, 8 high, a new line when one would pass 24 columns; a section's
    row header on a line of its own. Ids count up in order, so existing ids never move."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, section in SECTIONS:
        if title is not None:
            panels.append(row(len(panels) + 1, title, y))
            y += 1
        x, height = 0, 0
        for name, unit, targets, width in section:
            if x + width > 24:
                x, y = 0, y + 8
            panels.append(panel(len(panels) + 1, name, unit, targets, width, x, y))
            x, height = x + width, 8
        y += height
    return panels


def dashboard() -> dict[str, Any]:
    panels = layout()
    return {
        "uid": "nlp-serve",
        "title": "nlp-serve",
        "tags": ["nlp-serve"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "model",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "prometheus"},
                    "query": "label_values(nlp_serve_model_loaded, model)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                }
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
