"""Encoder heads to ONNX with torch.onnx, checked against the PyTorch model before they are kept.

First choice: the TorchScript exporter over the model with eager attention and the additive
4D mask built in the wrapper (0 where a token is kept, the dtype's minimum where it is
padding). transformers 5 builds its masks with code TorchScript cannot trace, and this graph
is the one onnxruntime's transformer optimiser recognises, so attention fuses. Where tracing
fails or the graph disagrees with PyTorch, the dynamo exporter (opset 18) is the fallback:
measured 15-27% slower on ONNX Runtime, and its attention does not fuse.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from app.runtimes.base import AUTO_CLASSES, HEAD_OUTPUTS, Head

logger = logging.getLogger(__name__)

OPSET = 17
DYNAMO_OPSET = 18
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# An export is kept only when its outputs match PyTorch's this closely (max |difference|,
# relative to the largest output value, on padded random batches).
PARITY_TOLERANCE = 1e-3


class ExportMismatchError(RuntimeError):
    """The exported graph's outputs differ from the PyTorch model's."""


def _wrapper(model: Any, head: Head, additive_mask: bool) -> tuple[Any, list[str]]:
    import torch

    names = [n for n in INPUTS if n in inspect.signature(model.forward).parameters]
    outputs = HEAD_OUTPUTS[head]

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> tuple[Any, ...]:
            kwargs = dict(zip(names, args, strict=True))
            if additive_mask:
                mask = kwargs["attention_mask"]
                batch, length = mask.shape
                keep = mask[:, None, None, :].expand(batch, 1, length, length).to(torch.float32)
                inverted = 1.0 - keep
                kwargs["attention_mask"] = inverted.masked_fill(
                    inverted.to(torch.bool), torch.finfo(torch.float32).min
                )
            result = self.model(**kwargs)
            return tuple(result[name] for name in outputs)

    return Exported().eval(), names


def probe_batches(config: Any, names: list[str]) -> list[dict[str, np.ndarray]]:
    """Two padded batches of random token ids: what the parity check runs."""
    rng = np.random.default_rng(0)
    vocab = int(getattr(config, "vocab_size", 1000) or 1000)
    type_vocab = int(getattr(config, "type_vocab_size", 1) or 1)
    batches = []
    for rows, length in ((3, 11), (5, 23)):
        ids = rng.integers(min(5, vocab - 1), vocab, size=(rows, length), dtype=np.int64)
        mask = np.ones((rows, length), dtype=np.int64)
        for row in range(1, rows):  # every row but the first padded by a different amount
            mask[row, length - 2 * row :] = 0
        batch = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            types = np.zeros_like(ids)
            if type_vocab > 1:
                types[:, length // 2 :] = 1
            batch["token_type_ids"] = types
        batches.append({n: batch[n] for n in names})
    return batches


def check_parity(
    reference: Any, session_outputs: Any, batches: list[dict[str, np.ndarray]], what: str
) -> float:
    """Largest relative difference between PyTorch (`reference`, a callable of the batch
    returning arrays) and the graph (`session_outputs`, the same); raises past the tolerance."""
    worst = 0.0
    for batch in batches:
        mask = batch.get("attention_mask")
        for want, got in zip(reference(batch), session_outputs(batch), strict=True):
            want, got = np.asarray(want, np.float32), np.asarray(got, np.float32)
            if want.shape != got.shape:
                raise ExportMismatchError(f"{what}: shape {got.shape}, PyTorch {want.shape}")
            if mask is not None and want.ndim >= 2 and want.shape[:2] == mask.shape:
                keep = mask.astype(bool)  # padded positions carry no meaning
                want, got = want[keep], got[keep]
            scale = max(1.0, float(np.abs(want).max(initial=0.0)))
            worst = max(worst, float(np.abs(want - got).max(initial=0.0)) / scale)
    if worst > PARITY_TOLERANCE:
        raise ExportMismatchError(f"{what}: outputs differ from PyTorch by {worst:.3g}")
    return worst


def _load(model_dir: Path, head: Head, **kwargs: Any) -> Any:
    import transformers

    auto_class = getattr(transformers, AUTO_CLASSES[head])
    return auto_class.from_pretrained(str(model_dir), **kwargs).eval()


def export_encoder(model_dir: Path, head: Head, path: Path) -> str:
    """Write `head` of model_dir to `path`; returns which exporter made it."""
    import onnxruntime as ort
    import torch

    reference = _load(model_dir, head)  # as the PyTorch backend serves it
    outputs = list(HEAD_OUTPUTS[head])
    failures: dict[str, str] = {}
    for exporter in ("torchscript", "dynamo"):
        dynamo = exporter == "dynamo"
        model = reference if dynamo else _load(model_dir, head, attn_implementation="eager")
        wrapped, names = _wrapper(model, head, additive_mask=not dynamo)
        batches = probe_batches(reference.config, names)
        example = tuple(torch.from_numpy(batches[0][n]) for n in names)
        try:
            with torch.inference_mode(False), torch.no_grad():
                _export(wrapped, example, path, names, outputs, head, dynamo)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            served, _ = _wrapper(reference, head, additive_mask=False)

            def run_torch(
                batch: dict[str, np.ndarray], served: Any = served, names: list[str] = names
            ) -> list[Any]:
                with torch.inference_mode():
                    result = served(*(torch.from_numpy(batch[n]) for n in names))
                return [t.float().numpy() for t in result]

            def run_onnx(batch: dict[str, np.ndarray], session: Any = session) -> list[Any]:
                return list(session.run(outputs, batch))

            worst = check_parity(run_torch, run_onnx, batches, f"{exporter} export")
            logger.info("%s: %s export within %.2g of PyTorch", model_dir, exporter, worst)
            return exporter
        except Exception as exc:  # the next exporter, or the error below
            failures[exporter] = f"{type(exc).__name__}: {str(exc)[:300]}"
            logger.warning("%s: %s export failed: %s", model_dir, exporter, failures[exporter])
            path.unlink(missing_ok=True)
    raise ExportMismatchError(
        "; ".join(f"{name} exporter: {why}" for name, why in failures.items())
    )


def _export(
    module: Any,
    example: tuple[Any, ...],
    path: Path,
    names: list[str],
    outputs: list[str],
    head: Head,
    dynamo: bool,
) -> None:
    import torch

    def export(**exporter: Any) -> None:
        torch.onnx.export(
            module, example, str(path), input_names=names, output_names=outputs, **exporter
        )

    if dynamo:
        from torch.export import Dim

        batch, sequence = Dim("batch"), Dim("sequence")
        # one entry for forward(*args), itself one entry per input
        shapes = (tuple({0: batch, 1: sequence} for _ in names),)
        export(opset_version=DYNAMO_OPSET, dynamic_shapes=shapes, dynamo=True,
               external_data=False, verbose=False)  # fmt: skip
        return
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    for name in outputs:
        pooled = head is Head.SEQUENCE_CLASSIFICATION
        axes[name] = {0: "batch"} if pooled else {0: "batch", 1: "sequence"}
    # The TorchScript exporter is deprecated in favour of dynamo, knowingly: its graph is the
    # one ONNX Runtime's attention fusion recognises (module docstring).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        export(opset_version=OPSET, dynamic_axes=axes, dynamo=False)
