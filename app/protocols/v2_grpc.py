"""Open Inference Protocol v2 over gRPC: protobuf messages <-> the v2 types of v2_codec.

Pure protocol code, no model logic and no gRPC server: the servicer turns a ModelInferRequest
into the same InferRequest the HTTP route parses, and the model's OutputTensors into a
ModelInferResponse. The checks and their messages are v2_codec's (shape, rank, element count,
datatypes), so both transports refuse the same requests the same way.

An input's data comes either typed, in its ``contents`` (the list that belongs to its datatype:
``bytes_contents`` for BYTES, ``int64_contents`` for INT64, ``fp32_contents`` for FP32, ...), or
as bytes, in the request's ``raw_input_contents``: one entry per input, in the order of the
inputs, for every input or for none. Raw BYTES are, per element, a 4-byte little-endian length
and the bytes; raw numbers are little-endian. tritonclient.grpc always sends raw.

Outputs go back raw by default: tritonclient.grpc (2.73) reads an output only from
``raw_output_contents`` (matched to the outputs by position); from typed contents it reads
nothing for numeric outputs and fails on BYTES. Typed outputs are there for other clients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.protocols.grpc_v2.inference_pb2 import (
    InferParameter,
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from app.protocols.v2_codec import (
    DATATYPES,
    NUMERIC_DTYPES,
    UNSUPPORTED_TENSOR_PARAMETERS,
    InferRequest,
    OutputTensor,
    RequestedOutput,
    Tensor,
    check_count,
    decode_binary,
    element_count,
    output_bytes,
    requested_outputs,
)

# v2 datatype -> the InferTensorContents list that carries it typed. FP16 (and BF16) has none:
# it travels only as raw bytes.
CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# The numpy type of each typed list's protobuf values.
_FIELD_DTYPES: dict[str, str] = {
    "bool_contents": "?",
    "int_contents": "<i4",
    "int64_contents": "<i8",
    "uint_contents": "<u4",
    "uint64_contents": "<u8",
    "fp32_contents": "<f4",
    "fp64_contents": "<f8",
}
# Datatypes narrower than the protobuf integers that carry them: their values are range-checked.
_NARROW_INTEGERS = frozenset({"INT8", "INT16", "UINT8", "UINT16"})
_PARAMETER_KINDS = "bool_param, int64_param, uint64_param, double_param or string_param"
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# --- parameters ----------------------------------------------------------------------------


def parameters_from_proto(parameters: Mapping[str, InferParameter], owner: str) -> dict[str, Any]:
    """A protobuf parameters map as a dict of plain values (bool, int, float, str); `owner`
    names where it was ("the request", "input 'TEXT'") for the error of a parameter with no
    value."""
    out: dict[str, Any] = {}
    for key, parameter in parameters.items():
        kind = parameter.WhichOneof("parameter_choice")
        if kind is None:
            raise InvalidInput(
                f"parameter {key!r} of {owner} has no value; set one of {_PARAMETER_KINDS}"
            )
        out[key] = getattr(parameter, kind)
    return out


def parameter_to_proto(key: str, value: Any) -> InferParameter:
    """One plain value as an InferParameter: bool, int (int64, or uint64 above int64's
    range), float (double) or str."""
    if isinstance(value, bool):
        return InferParameter(bool_param=value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return InferParameter(int64_param=value)
        if 0 <= value <= _UINT64_MAX:
            return InferParameter(uint64_param=value)
        raise InvalidInput(f"parameter {key!r} is {value}, outside 64-bit integers")
    if isinstance(value, float):
        return InferParameter(double_param=value)
    if isinstance(value, str):
        return InferParameter(string_param=value)
    raise InvalidInput(
        f"parameter {key!r} is a {type(value).__name__}; a gRPC parameter holds one bool, "
        "integer, float or string"
    )


def parameters_to_proto(values: Mapping[str, Any]) -> dict[str, InferParameter]:
    """Plain values as a parameters map, e.g. ``ModelInferResponse(parameters=...)``."""
    return {key: parameter_to_proto(key, value) for key, value in values.items()}


# --- requests ------------------------------------------------------------------------------


def _refuse_unsupported(parameters: Mapping[str, Any], what: str, fix: str = "") -> None:
    for unsupported in UNSUPPORTED_TENSOR_PARAMETERS:
        if unsupported in parameters:
            raise InvalidInput(f"{what}: {unsupported!r} is not supported by this server{fix}")


def _typed_data(
    contents: InferTensorContents, datatype: str, name: str, shape: list[int], count: int
) -> list[bytes] | np.ndarray:
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidInput(
            f"input {name!r} is {datatype}, which has no typed contents; send it in "
            "raw_input_contents (little-endian bytes)"
        )
    for other, _ in contents.ListFields():
        if other.name != field:
            raise InvalidInput(
                f"input {name!r} is {datatype} but its contents fill {other.name}; put "
                f"{datatype} elements in contents.{field}"
            )
    values = getattr(contents, field)
    check_count(values, shape, count, name)  # before anything is converted
    if datatype == "BYTES":
        return list(values)
    array = np.asarray(values, dtype=_FIELD_DTYPES[field])
    if datatype in _NARROW_INTEGERS and array.size:
        info = np.iinfo(NUMERIC_DTYPES[datatype])
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidInput(
                f"input {name!r}: {bad} does not fit {datatype} ({info.min}..{info.max})"
            )
    return array.astype(NUMERIC_DTYPES[datatype])


def _input_tensor(tensor: ModelInferRequest.InferInputTensor, raw: bytes | None) -> Tensor:
    name = tensor.name
    if not name:
        raise InvalidInput("each input needs a name")
    datatype = tensor.datatype
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r} has datatype {datatype!r}; use one of {sorted(DATATYPES)}"
        )
    shape = list(tensor.shape)
    count = element_count(shape, name)
    parameters = parameters_from_proto(tensor.parameters, f"input {name!r}")
    _refuse_unsupported(
        parameters,
        f"input {name!r}",
        "; send the data in the request (the input's contents or raw_input_contents)",
    )
    data: list[bytes] | np.ndarray
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidInput(
                f"input {name!r} has contents while the request carries raw_input_contents; "
                "send every input's data one way: all in raw_input_contents or all in contents"
            )
        data = decode_binary(raw, datatype, name, count)
    elif tensor.HasField("contents"):
        data = _typed_data(tensor.contents, datatype, name, shape, count)
    elif count == 0:
        data = [] if datatype == "BYTES" else np.empty(0, dtype=NUMERIC_DTYPES[datatype])
    else:
        field = CONTENTS_FIELDS.get(datatype, "raw_input_contents")
        raise InvalidInput(
            f"input {name!r} carries no data; put its {count} elements in contents.{field} "
            "or every input's bytes in raw_input_contents"
        )
    check_count(data, shape, count, name)
    return Tensor(name, datatype, shape, data, parameters)


def _requested_outputs(
    outputs: Sequence[ModelInferRequest.InferRequestedOutputTensor],
) -> list[RequestedOutput] | None:
    if not outputs:
        return None  # protobuf cannot tell "none listed" from an empty list: all outputs
    requested = []
    for output in outputs:
        if not output.name:
            raise InvalidInput("each requested output needs a name")
        parameters = parameters_from_proto(output.parameters, f"output {output.name!r}")
        _refuse_unsupported(parameters, f"output {output.name!r}")
        # binary_data means nothing here: how outputs travel is the transport's choice.
        requested.append(RequestedOutput(output.name))
    return requested


def infer_request_from_proto(msg: ModelInferRequest) -> InferRequest:
    """The InferRequest a ModelInferRequest carries (model name and version stay on `msg`)."""
    if not msg.inputs:
        raise InvalidInput("the inference request needs at least one tensor in inputs")
    raws = list(msg.raw_input_contents)
    if raws and len(raws) != len(msg.inputs):
        raise InvalidInput(
            f"the request has {len(raws)} raw_input_contents for {len(msg.inputs)} inputs; send "
            "one entry per input, in the order of inputs, or none (and the data in contents)"
        )
    inputs = [
        _input_tensor(tensor, raws[index] if raws else None)
        for index, tensor in enumerate(msg.inputs)
    ]
    return InferRequest(
        inputs=inputs,
        outputs=_requested_outputs(msg.outputs),
        parameters=parameters_from_proto(msg.parameters, "the request"),
        id=msg.id or None,
    )


# --- responses -----------------------------------------------------------------------------


def _typed_contents(tensor: OutputTensor) -> InferTensorContents:
    if tensor.datatype == "BYTES":
        return InferTensorContents(
            bytes_contents=[str(item).encode("utf-8") for item in tensor.data]
        )
    array = np.asarray(tensor.data, dtype=NUMERIC_DTYPES[tensor.datatype]).reshape(-1)
    contents = InferTensorContents()
    getattr(contents, CONTENTS_FIELDS[tensor.datatype]).extend(array.tolist())
    return contents


def infer_response_to_proto(
    model_name: str,
    model_version: str,
    request: InferRequest,
    tensors: Sequence[OutputTensor],
    raw: bool = True,
    parameters: Mapping[str, Any] | None = None,
) -> ModelInferResponse:
    """The ModelInferResponse with only the outputs the request asked for, in its order.

    raw=True (the default; what Triton does and the only layout tritonclient.grpc reads): every
    output's data in raw_output_contents. raw=False: typed contents, unless an output's datatype
    has no typed list (FP16), in which case the whole response goes raw, since a reader matches
    raw entries to outputs by position and a response must not mix the two."""
    chosen = [
        tensor
        for tensor, _ in requested_outputs(model_name, request, tensors, "ModelMetadata lists them")
    ]
    raw = raw or any(t.datatype not in CONTENTS_FIELDS for t in chosen)
    response = ModelInferResponse(
        model_name=model_name,
        model_version=model_version,
        id=request.id or "",
        parameters=parameters_to_proto(parameters or {}),
    )
    for tensor in chosen:
        output = response.outputs.add(
            name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
        )
        if raw:
            response.raw_output_contents.append(output_bytes(tensor))
        else:
            output.contents.CopyFrom(_typed_contents(tensor))
    return response
