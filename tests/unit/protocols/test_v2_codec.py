"""The v2 codec against tritonclient's own serializers: what the real client sends parses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.http import InferInput, InferRequestedOutput
from tritonclient.http._utils import _get_inference_request
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from app.errors import InvalidInput
from app.protocols.v2_codec import (
    HEADER_LENGTH,
    OutputTensor,
    deserialize_bytes,
    encode_infer_response,
    parse_infer_request,
    serialize_bytes,
)

TEXTS = ["héllo wörld", "", "a longer text with ✓ unicode"]


def triton_body(inputs, outputs=None, parameters=None):
    body, json_size = _get_inference_request(
        inputs=inputs, request_id="req-1", outputs=outputs, sequence_id=0,
        sequence_start=False, sequence_end=False, priority=0, timeout=None,
        custom_parameters=parameters,
    )  # fmt: skip
    return body if isinstance(body, bytes) else body.encode(), json_size


def text_input(binary: bool) -> InferInput:
    tensor = InferInput("TEXT", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object), binary)
    return tensor


def test_bytes_round_trip_matches_tritonclient() -> None:
    items = [t.encode() for t in TEXTS]
    ours = serialize_bytes(items)
    assert ours == serialize_byte_tensor(np.array(items, dtype=object)).item()
    assert deserialize_bytes(ours) == items
    assert list(deserialize_bytes_tensor(ours)) == items


@pytest.mark.parametrize("binary", [False, True])
def test_parses_what_tritonclient_sends(binary: bool) -> None:
    scores = InferInput("SCALE", [2, 2], "FP32")
    scores.set_data_from_numpy(np.array([[1, 2], [3, 4.5]], dtype=np.float32), binary)
    body, json_size = triton_body([text_input(binary), scores], parameters={"top_k": 2})
    assert (json_size is not None) == binary
    request = parse_infer_request(body, None if json_size is None else str(json_size))
    assert request.id == "req-1"
    assert request.parameters["top_k"] == 2
    assert request.input("TEXT").texts() == TEXTS
    scale = request.input("SCALE")
    assert scale.shape == [2, 2]
    assert np.asarray(scale.data).tolist() == [1.0, 2.0, 3.0, 4.5]
    # no outputs named: tritonclient asks for every output in binary
    assert request.outputs is None
    assert request.parameters["binary_data_output"] is True


def test_nested_json_data_is_flattened_row_major() -> None:
    body = {"inputs": [{"name": "TEXT", "shape": [2, 1], "datatype": "BYTES",
                        "data": [["a"], ["b"]]}]}  # fmt: skip
    assert parse_infer_request(json.dumps(body).encode(), None).input("TEXT").texts() == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "header", "fragment"),
    [
        (b"not json", None, "not JSON"),
        (b'{"inputs": []}', None, "non-empty"),
        (b'{"inputs": [{"name": "T", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}',
         None, "2 elements"),
        (b'{"inputs": [{"name": "T", "shape": [1], "datatype": "STRING", "data": ["a"]}]}',
         None, "datatype"),
        (b'{"inputs": [{"name": "T", "shape": [1], "datatype": "BYTES", "data": ["a"],'
         b' "parameters": {"shared_memory_region": "r"}}]}', None, "not supported"),
        (b'{"inputs": [{"name": "T", "shape": [1], "datatype": "BYTES",'
         b' "parameters": {"binary_data_size": 9}}]}', "all", "binary_data_size"),
        (b'{"inputs": [{"name": "T", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}xx',
         "all-but-2", "belong to no input"),
        (b"{}", "99", "Inference-Header-Content-Length"),
        (b'{"inputs": [{"name": "T", "shape": [1], "datatype": "BYTES", "data": ["a"]}],'
         b' "outputs": [{"name": "LABEL", "parameters": [1]}]}', None, "must be an object"),
        (b'{"inputs": [{"name": "T", "shape": [1], "datatype": "BYTES", "data": ["a"]}],'
         b' "outputs": [{"name": "LABEL", "parameters": 7}]}', None, "must be an object"),
    ],
)  # fmt: skip
def test_malformed_requests_say_what_is_wrong(body: bytes, header: str | None, fragment: str):
    if header == "all":
        header = str(len(body))
    elif header == "all-but-2":
        header = str(len(body) - 2)
    with pytest.raises(InvalidInput, match=fragment):
        parse_infer_request(body, header)


def test_truncated_binary_bytes_element_is_refused() -> None:
    with pytest.raises(InvalidInput, match="past its end"):
        deserialize_bytes(b"\x05\x00\x00\x00abc")


class _Response:
    """What tritonclient's InferResult reads: headers by name and the body."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body, self.headers, self.offset = body, headers, 0

    def get(self, key: str) -> str | None:
        return self.headers.get(key.lower())

    def read(self, length: int = -1) -> bytes:
        end = len(self.body) if length == -1 else self.offset + length
        chunk, self.offset = self.body[self.offset : end], end
        return chunk


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_reads_our_answers(binary: bool) -> None:
    from tritonclient.http import InferResult

    body, size = triton_body(
        [text_input(False)],
        outputs=[InferRequestedOutput("LABEL", binary), InferRequestedOutput("EMBEDDING", binary)],
    )
    request = parse_infer_request(body, None if size is None else str(size))
    vectors = np.array([[0.1, -2.5], [3.0, 1e-8], [0.0, 7.25]], dtype=np.float32)
    tensors = [
        OutputTensor("LABEL", "BYTES", [3], ["pos", "nég", ""]),
        OutputTensor("EMBEDDING", "FP32", [3, 2], vectors),
        OutputTensor("UNASKED", "INT64", [1], np.array([1])),
    ]
    raw, headers = encode_infer_response("m", "1", request, tensors)
    assert (HEADER_LENGTH in headers) == binary
    result = InferResult(_Response(raw, headers), verbose=False)
    labels = ["pos", "nég", ""]
    # binary BYTES come back as bytes, JSON ones as the strings the JSON held
    expected = [label.encode() for label in labels] if binary else labels
    assert result.as_numpy("LABEL").tolist() == expected
    assert np.array_equal(result.as_numpy("EMBEDDING"), vectors)
    assert result.as_numpy("UNASKED") is None
    assert result.get_response()["id"] == "req-1"


def test_unknown_requested_output_is_refused() -> None:
    request = parse_infer_request(
        b'{"inputs": [{"name": "T", "shape": [1], "datatype": "BYTES", "data": ["a"]}],'
        b' "outputs": [{"name": "NOPE"}]}',
        None,
    )
    with pytest.raises(InvalidInput, match="no output 'NOPE'"):
        encode_infer_response("m", "1", request, [OutputTensor("LABEL", "BYTES", [1], ["x"])])
