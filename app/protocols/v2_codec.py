"""Open Inference Protocol v2 (KServe / Triton) tensors: JSON and the binary tensor extension.

Pure protocol code, no model logic. A request body is a JSON header, optionally followed by the
raw bytes of inputs whose ``parameters.binary_data_size`` says how long they are; the header's
length is then in the ``Inference-Header-Content-Length`` HTTP header. BYTES elements travel
binary as a 4-byte little-endian length followed by the bytes. Answers use the same layout for
the outputs asked binary (``parameters.binary_data`` on a requested output, or the request's
``parameters.binary_data_output``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from app.errors import InvalidInput, PayloadTooLarge
from app.schemas.common import header_int
from app.settings import MAX_LIST_ITEMS

HEADER_LENGTH = "inference-header-content-length"

# v2 datatype -> numpy dtype (little-endian, as the binary extension sends them).
NUMERIC_DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = frozenset({*NUMERIC_DTYPES, "BYTES"})
MAX_RANK = 8  # dimensions a tensor may have (text inputs need one or two)
# What this server does not implement; named so the error says so instead of "unknown".
UNSUPPORTED_TENSOR_PARAMETERS = ("shared_memory_region", "classification")


@dataclass
class Tensor:
    """One named tensor: BYTES data as a list of bytes, numeric data as a flat numpy array."""

    name: str
    datatype: str
    shape: list[int]
    data: list[bytes] | np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """The tensor's elements as UTF-8 text, row-major (any shape)."""
        if self.datatype != "BYTES" or isinstance(self.data, np.ndarray):
            raise InvalidInput(
                f"input {self.name!r} must be BYTES (UTF-8 text), not {self.datatype}"
            )
        try:
            return [item.decode("utf-8") for item in self.data]
        except UnicodeDecodeError:
            raise InvalidInput(f"input {self.name!r} holds bytes that are not UTF-8 text") from None


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: the request's binary_data_output decides


@dataclass
class InferRequest:
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None
    parameters: dict[str, Any]
    id: str | None = None

    def input(self, name: str) -> Tensor:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        names = [t.name for t in self.inputs]
        raise InvalidInput(f"missing input tensor {name!r}; the request has {names}")


def serialize_bytes(items: Sequence[bytes]) -> bytes:
    """BYTES elements as the binary extension sends them: <u32 length><bytes> each."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def deserialize_bytes(raw: bytes, name: str = "tensor", limit: int | None = None) -> list[bytes]:
    """The elements of a binary BYTES tensor; more than `limit` of them is refused as soon as
    it is seen (a 4 MB body can hold a million empty elements)."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if limit is not None and len(items) == limit:
            raise InvalidInput(f"binary BYTES tensor {name!r} holds more than {limit} elements")
        if offset + 4 > len(raw):
            raise InvalidInput(f"binary BYTES tensor {name!r} ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(
                f"binary BYTES tensor {name!r} announces a {length}-byte element past its end"
            )
        items.append(raw[offset : offset + length])
        offset += length
    return items


def element_count(shape: list[int], name: str) -> int:
    """The number of elements of input `name`'s shape, refused past MAX_RANK dimensions, with a
    negative dimension, or above MAX_LIST_ITEMS elements (shared by JSON, binary and gRPC)."""
    if len(shape) > MAX_RANK:
        raise InvalidInput(f"input {name!r} has {len(shape)} dimensions; at most {MAX_RANK}")
    if any(dim < 0 for dim in shape):
        raise InvalidInput(f"input {name!r} has a negative dimension in shape {shape}")
    count = math.prod(shape)
    if count > MAX_LIST_ITEMS:
        raise PayloadTooLarge(
            f"input {name!r} has shape {shape}: {count} elements; no tensor may hold more than "
            f"{MAX_LIST_ITEMS}; split the request"
        )
    return count


def _flatten(data: Any, depth: int, name: str) -> list[Any]:
    """Row-major elements of JSON data nested at most `depth` lists deep (the shape's rank)."""
    if not isinstance(data, list):
        return [data]
    if depth == 0:
        raise InvalidInput(f"input {name!r}: data is nested deeper than its shape")
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item, depth - 1, name))
    return out


def _parse_shape(raw: Any, name: str) -> list[int]:
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in raw
    ):
        raise InvalidInput(f"input {name!r} needs a shape: a list of whole numbers, e.g. [2]")
    return list(raw)


def decode_binary(chunk: bytes, datatype: str, name: str, count: int) -> list[bytes] | np.ndarray:
    """The elements of input `name` sent as bytes (the binary extension, gRPC's raw contents):
    length-prefixed BYTES, at most `count` of them, or little-endian numbers."""
    if datatype == "BYTES":
        return deserialize_bytes(chunk, name, limit=count)
    dtype = np.dtype(NUMERIC_DTYPES[datatype])
    if len(chunk) % dtype.itemsize:
        raise InvalidInput(
            f"input {name!r}: {len(chunk)} bytes is not a whole number of {datatype} elements"
        )
    return np.frombuffer(chunk, dtype=dtype)


def check_count(data: Sized, shape: list[int], count: int, name: str) -> None:
    """Refuse input `name` when it carries other than its shape's `count` elements."""
    if len(data) != count:
        raise InvalidInput(
            f"input {name!r} has shape {shape} ({count} elements) but carries {len(data)}"
        )


def _tensor_from_json(raw: Any, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InvalidInput('each input must be an object with "name", "shape", "datatype"')
    name = raw["name"]
    datatype = raw.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r} has datatype {datatype!r}; use one of {sorted(DATATYPES)}"
        )
    shape = _parse_shape(raw.get("shape"), name)
    count = element_count(shape, name)
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"input {name!r}: parameters must be an object")
    for unsupported in UNSUPPORTED_TENSOR_PARAMETERS:
        if unsupported in parameters:
            raise InvalidInput(
                f"input {name!r}: {unsupported!r} is not supported by this server; send the "
                "data in the request (JSON or the binary tensor extension)"
            )
    size = parameters.get("binary_data_size")
    data: list[bytes] | np.ndarray
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidInput(
                f"input {name!r} announces binary_data_size {size!r} but the body holds "
                f"{len(binary) - offset} bytes after the JSON header"
            )
        data = decode_binary(binary[offset : offset + size], datatype, name, count)
        offset += size
    else:
        if "data" not in raw:
            raise InvalidInput(f'input {name!r} has neither "data" nor parameters.binary_data_size')
        flat = _flatten(raw["data"], len(shape), name)
        if datatype == "BYTES":
            if not all(isinstance(item, str) for item in flat):
                raise InvalidInput(f"input {name!r}: BYTES data in JSON must be strings")
            data = [item.encode("utf-8") for item in flat]
        else:
            try:
                data = np.asarray(flat, dtype=np.dtype(NUMERIC_DTYPES[datatype]))
            except (TypeError, ValueError, OverflowError):
                raise InvalidInput(f"input {name!r}: data is not {datatype} numbers") from None
    check_count(data, shape, count, name)
    return Tensor(name, datatype, shape, data, parameters), offset


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput('"outputs" must be a list of objects like {"name": "..."}')
    outputs = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput('each requested output must be an object with a "name"')
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput(f"output {item['name']!r}: parameters must be an object")
        for unsupported in UNSUPPORTED_TENSOR_PARAMETERS:
            if unsupported in parameters:
                raise InvalidInput(
                    f"output {item['name']!r}: {unsupported!r} is not supported by this server"
                )
        binary = parameters.get("binary_data")
        outputs.append(RequestedOutput(item["name"], None if binary is None else bool(binary)))
    return outputs


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse a v2 infer body: JSON alone, or a JSON header of `header_length` bytes + tensors."""
    if header_length is None:
        header, binary = body, b""
    else:
        split = header_int(header_length)
        if split is None or split > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length[:32]!r} but the body has "
                f"{len(body)} bytes; it must be the JSON header's length in bytes"
            )
        header, binary = body[:split], body[split:]
    try:
        raw = orjson.loads(header)
    except orjson.JSONDecodeError:
        raise InvalidInput(
            "the inference request header is not JSON; send "
            '{"inputs": [{"name": ..., "shape": ..., "datatype": ..., "data": ...}]}'
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("inputs"), list) or not raw["inputs"]:
        raise InvalidInput('the inference request needs a non-empty "inputs" list')
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be an object')
    inputs, offset = [], 0
    for item in raw["inputs"]:
        tensor, offset = _tensor_from_json(item, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes after the JSON header belong to no input; check "
            "each input's parameters.binary_data_size"
        )
    request_id = raw.get("id")
    return InferRequest(
        inputs=inputs,
        outputs=_requested_outputs(raw.get("outputs")),
        parameters=parameters,
        id=str(request_id) if request_id is not None else None,
    )


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    data: Sequence[str] | np.ndarray  # BYTES as text, numeric as an array


def _json_data(tensor: OutputTensor) -> list[Any]:
    if tensor.datatype == "BYTES":
        return list(tensor.data)
    array = np.asarray(tensor.data, dtype=NUMERIC_DTYPES[tensor.datatype])
    return list(array.reshape(-1).tolist())


def output_bytes(tensor: OutputTensor) -> bytes:
    """An output's elements as bytes: length-prefixed UTF-8 BYTES, or little-endian numbers."""
    if tensor.datatype == "BYTES":
        return serialize_bytes([str(item).encode("utf-8") for item in tensor.data])
    array = np.asarray(tensor.data, dtype=NUMERIC_DTYPES[tensor.datatype])
    return array.reshape(-1).tobytes()


def requested_outputs(
    model_name: str, request: InferRequest, tensors: Sequence[OutputTensor], listed_by: str
) -> list[tuple[OutputTensor, RequestedOutput | None]]:
    """The outputs the request asks for, in its order (every one when it names none);
    `listed_by` says where a client finds the model's outputs."""
    if request.outputs is None:
        return [(tensor, None) for tensor in tensors]
    by_name = {t.name: t for t in tensors}
    chosen: list[tuple[OutputTensor, RequestedOutput | None]] = []
    for wanted in request.outputs:
        if wanted.name not in by_name:
            raise InvalidInput(
                f"model {model_name!r} has no output {wanted.name!r}; its outputs are "
                f"{list(by_name)} ({listed_by})"
            )
        chosen.append((by_name[wanted.name], wanted))
    return chosen


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    tensors: Sequence[OutputTensor],
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers, with only the outputs the request asked for."""
    default_binary = bool(request.parameters.get("binary_data_output", False))
    chosen = [
        (tensor, default_binary if wanted is None or wanted.binary is None else wanted.binary)
        for tensor, wanted in requested_outputs(
            model_name, request, tensors, f"GET /v2/models/{model_name}"
        )
    ]
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor, binary in chosen:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if binary:
            blob = output_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(tensor)
        outputs.append(entry)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = outputs
    header = orjson.dumps(answer)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
