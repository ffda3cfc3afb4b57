"""Graph optimisation and int8 quantisation of an exported ONNX graph, in place, with
onnxruntime's own tools (its transformer optimiser and its dynamic quantiser).

The settings reproduce what optimum-onnx's O1/O2/O3 and AutoQuantizationConfig did for the
same graph (measured: identical fused operators and identical int8 weights), so exports made
before and after the move answer alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

# onnxruntime's optimiser knows attention, layer-norm and GELU patterns by family. Families
# not listed get ONNX Runtime's generic optimisations only (saved with the graph).
TRANSFORMER_FAMILY: dict[str, str] = {
    "bert": "bert",
    "distilbert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "albert": "bert",
    "electra": "bert",
    "mpnet": "bert",
    "deberta": "bert",
    "deberta-v2": "bert",
    "bart": "bart",
    "mbart": "bart",
    "marian": "bart",
}
# ONNX Runtime's optimisation level for each of our levels: 1 basic (constant folding,
# redundant nodes), 2 extended (operator fusions).
ORT_LEVEL = {"O1": 1, "O2": 2, "O3": 2}

# Weight type per int8 instruction set: unsigned on AVX2 (its u8 x s8 kernels would saturate
# s8 x s8), signed where VNNI or AVX-512 multiply s8 directly.
WEIGHT_TYPE = {"avx2": "QUInt8", "avx512": "QInt8", "avx512_vnni": "QInt8", "arm64": "QInt8"}


def _sizes(config: Any) -> tuple[int, int]:
    heads = (
        getattr(config, "num_attention_heads", None)
        or getattr(config, "n_heads", None)
        or getattr(config, "encoder_attention_heads", None)
        or 0
    )
    hidden = (
        getattr(config, "hidden_size", None)
        or getattr(config, "dim", None)
        or getattr(config, "d_model", None)
        or 0
    )
    return int(heads), int(hidden)


def optimize(path: Path, level: str, model_dir: Path, *, seq2seq: bool = False) -> None:
    """O1: ONNX Runtime's basic optimisations; O2: + transformer fusions (attention, skip
    layer-norm, bias GELU); O3: O2 with GELU approximated. The seq2seq graphs come from the
    dynamo exporter, whose patterns the fusions do not match: they get ONNX Runtime's own
    optimisations at the level asked, saved with the graph."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir))
    family = TRANSFORMER_FAMILY.get(config.model_type)
    only_onnxruntime = level == "O1" or family is None or seq2seq
    options = FusionOptions(family or "bert")
    options.enable_embed_layer_norm = False  # keeps the graph's inputs as exported
    options.enable_gelu_approximation = level == "O3"
    heads, hidden = _sizes(config)
    optimized = optimize_model(
        str(path),
        family or "bert",
        heads,
        hidden,
        optimization_options=options,
        opt_level=ORT_LEVEL[level],
        use_gpu=False,
        only_onnxruntime=only_onnxruntime,
    )
    optimized.save_model_to_file(str(path), use_external_data_format=False)


def quantize(path: Path, isa: str) -> None:
    """Dynamic int8: weights per channel, activations quantised at run time (no calibration)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    staged = path.with_name(path.stem + ".int8.onnx")
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        quantize_dynamic(
            str(path),
            str(staged),
            op_types_to_quantize=list(IntegerOpsRegistry),
            per_channel=True,
            reduce_range=False,
            weight_type=getattr(QuantType, WEIGHT_TYPE[isa]),
            extra_options={
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "EnableSubgraph": False,
                "ForceSymmetric": False,
                "MatMulConstBOnly": False,
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
            },
        )
    finally:
        root.removeFilter(_no_preprocessing_advice)
    staged.replace(path)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    """The quantiser advises, on the root logger, a shape-inference pre-pass meant for static
    quantisation of CNNs; dynamic quantisation of our graphs does not need it."""
    return "pre-processing before quantization" not in record.getMessage()
