"""Generation on real (tiny, random-weight) causal LMs: the continuous batcher's tokens match
transformers' own generate(), and streams over a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.common import serve
from tests.conftest import serve_in_process, settings_for

pytestmark = pytest.mark.integration

PROMPTS = [
    "Once upon a time",
    "The weather today is",
    "A much longer prompt, with many more words in it than the others have, goes here",
    "x",
]


# Greedy tokens compared exactly across batch shapes are only safe where no step is a near-tie:
# rounding between batch shapes, engines and CPUs moves these logits by ~1e-6.
MIN_TOP2_MARGIN = 1e-4


def reference(directory: Path, prompt: str, new_tokens: int) -> str:
    """transformers' own greedy generate(), one prompt at a time; every step's best token
    leads the next by MIN_TOP2_MARGIN at least (else the fixture needs other prompts)."""
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory)).eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False,
                             eos_token_id=None, pad_token_id=tokenizer.pad_token_id,
                             output_scores=True, return_dict_in_generate=True)  # fmt: skip
    margins = [float(top[0] - top[1]) for top in (torch.topk(s[0], 2).values for s in out.scores)]
    assert min(margins) > MIN_TOP2_MARGIN, f"a near-tie in the reference: {min(margins)}"
    new = out.sequences[0, inputs["input_ids"].shape[1] :]
    return str(tokenizer.decode(new, skip_special_tokens=True))


@pytest.mark.parametrize("model", ["causal-lm", "chat-lm"])  # GPT-2; Llama (rotary, GQA)
async def test_batched_greedy_tokens_match_transformers_generate(
    tiny_models: dict[str, Path], write_catalog: Any, model: str
) -> None:
    entry = {"name": "lm", "task": "generate", "source": str(tiny_models[model]),
             "backend": "torch", "options": {"prefill_chunk_tokens": 8}}  # fmt: skip
    catalog = write_catalog([entry])
    lengths = [12, 20, 6, 16]  # they finish at different steps: rows leave a running batch

    async def ask(client: httpx.AsyncClient, i: int) -> dict[str, Any]:
        await asyncio.sleep(0.005 * i)  # and join one that is running
        body = {"inputs": PROMPTS[i], "max_new_tokens": lengths[i], "temperature": 0,
                "ignore_eos": True}  # fmt: skip
        response = await client.post("/v1/generate", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["results"][0]
        return result

    async with serve_in_process(settings_for(catalog)) as client:
        results = await asyncio.gather(*(ask(client, i) for i in range(len(PROMPTS))))
    for i, result in enumerate(results):
        assert result["completion_tokens"] == lengths[i]
        assert result["text"] == reference(tiny_models[model], PROMPTS[i], lengths[i])


def test_chat_messages_go_through_the_chat_template(tiny_models: dict[str, Path]) -> None:
    from app.registry.model import load_model
    from app.settings import Settings
    from app.spec import ModelSpec
    from app.tasks.causal import ChatMessage, GenerateTask, Prompt

    spec = ModelSpec(name="chat", task="generate", source=str(tiny_models["chat-lm"]))  # type: ignore[arg-type]
    task = load_model(spec, Settings(_env_file=None)).task  # type: ignore[call-arg]
    assert isinstance(task, GenerateTask)
    prompt = Prompt(messages=(ChatMessage("user", "Say hello"),))
    assert task.prompt_text(prompt) == (
        "<|im_start|>user\nSay hello<|im_end|>\n<|im_start|>assistant\n"
    )
    encoded = task.encode(prompt, task.warmup_request()[1])
    im_start = task.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert encoded.rows[0]["input_ids"][0] == im_start  # one special token, not its text


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path]) -> Iterator[str]:
    slow = {"name": "slow-lm", "task": "generate", "source": str(tiny_models["causal-lm"]),
            "backend": "fake", "backend_options": {"delay_ms": 20}}  # fmt: skip
    lm = {"name": "lm", "task": "generate", "source": str(tiny_models["causal-lm"]),
          "backend": "torch", "default": True}  # fmt: skip
    with serve([lm, slow], NLP_SERVE_LOG_LEVEL="info") as running:
        yield running.base


def events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


async def test_a_stream_sends_each_token_as_it_is_made_then_usage(server: str) -> None:
    body = {"inputs": ["Hello there", "General"], "max_new_tokens": 6, "seed": 5,
            "ignore_eos": True, "logprobs": 1}  # fmt: skip
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        whole = (await client.post("/v1/generate", json=body)).json()
        async with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            received = events([line async for line in r.aiter_lines()])
    tokens = [e for e in received if e["type"] == "token"]
    assert len(tokens) == 12
    assert all("logprob" in e for e in tokens)
    for index in (0, 1):
        text = "".join(e["text"] for e in tokens if e["index"] == index)
        assert text == whole["results"][index]["text"]  # same seed, same text
    assert [e["type"] for e in received[-3:]][-1] == "usage"
    assert received[-1]["usage"] == whole["usage"]


async def test_a_client_that_leaves_a_stream_stops_its_sequence(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:

        async def finished(reason: str) -> float:
            text = (await client.get("/metrics")).text
            prefix = f'nlp_serve_sequences_finished_total{{model="slow-lm",reason="{reason}"}}'
            return next((float(line.split()[-1]) for line in text.splitlines()
                         if line.startswith(prefix)), 0.0)  # fmt: skip

        before = await finished("cancelled")
        body = {"inputs": "never mind", "max_new_tokens": 200, "stream": True, "model": "slow-lm",
                "ignore_eos": True}  # fmt: skip
        async with client.stream("POST", "/v1/generate", json=body) as r:
            lines = r.aiter_lines()
            first = [await anext(lines) for _ in range(3)]  # a couple of tokens, then leave
            assert first[0].startswith("data: ")
        for _ in range(100):
            if await finished("cancelled") > before:
                break
            await asyncio.sleep(0.05)
        assert await finished("cancelled") == before + 1
        generated = (await client.get("/metrics")).text
        assert 'nlp_serve_sequences_running{model="slow-lm"} 0.0' in generated


async def test_health_answers_while_a_long_generation_runs(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        body = {"inputs": "keep busy", "max_new_tokens": 100, "model": "slow-lm",
                "ignore_eos": True}  # fmt: skip
        busy = asyncio.ensure_future(client.post("/v1/generate", json=body))
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        assert (await client.get("/healthz")).status_code == 200
        assert asyncio.get_running_loop().time() - started < 1.0
        assert (await busy).status_code == 200


@pytest.mark.parametrize("backend", ["torch", "onnx"])
async def test_a_sequence_that_takes_a_free_row_generates_what_it_would_alone(
    tiny_models: dict[str, Path],
    write_catalog: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    from app.runtimes.kv import KVCache

    writes: list[int] = []
    original = KVCache.write_row

    def counted(self: KVCache, row: int, other: KVCache) -> None:
        writes.append(row)
        original(self, row, other)

    monkeypatch.setattr(KVCache, "write_row", counted)
    entry = {"name": "lm", "task": "generate", "source": str(tiny_models["causal-lm"]),
             "backend": backend, "export": backend == "onnx"}  # fmt: skip
    settings = settings_for(write_catalog([entry]), onnx_cache_dir=tmp_path)
    greedy = {"temperature": 0, "ignore_eos": True}
    long_prompt = "A prompt for a sequence that leaves soon"
    async with serve_in_process(settings) as client:
        # four long ones (wider than the one that joins later), so one free row of five is
        # not worth dropping (FREE_ROWS_SHARE)
        running = asyncio.ensure_future(client.post("/v1/generate", json={
            "inputs": [f"{word} " * 20 for word in "xyzw"], "max_new_tokens": 150,
            **greedy}))  # fmt: skip
        await asyncio.sleep(0.01)
        short = await client.post("/v1/generate", json={
            "inputs": long_prompt, "max_new_tokens": 2, **greedy})  # fmt: skip
        assert short.status_code == 200  # it left: its row is free
        joined = await client.post("/v1/generate", json={
            "inputs": PROMPTS[1], "max_new_tokens": 20, **greedy})  # fmt: skip
        assert not running.done()
        await running
    assert writes  # the third sequence took the second one's row
    text = joined.json()["results"][0]["text"]
    assert text == reference(tiny_models["causal-lm"], PROMPTS[1], 20)
