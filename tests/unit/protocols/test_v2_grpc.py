"""The gRPC v2 codec: protobuf messages <-> the v2 types, with v2_codec's checks and messages.

Every message here goes through the wire (SerializeToString, then FromString) before it is
read, so what is tested is what a peer's bytes parse to. tritonclient.grpc itself cannot be
imported in this venv (it needs protobuf<7); `as_numpy` below reads a response the way its
InferResult.as_numpy does (2.73): raw_output_contents matched to outputs by position.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput, PayloadTooLarge
from app.protocols.grpc_v2.inference_pb2 import (
    InferParameter,
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from app.protocols.v2_codec import (
    MAX_RANK,
    InferRequest,
    OutputTensor,
    RequestedOutput,
    deserialize_bytes,
    parse_infer_request,
    serialize_bytes,
)
from app.protocols.v2_grpc import (
    infer_request_from_proto,
    infer_response_to_proto,
    parameter_to_proto,
    parameters_from_proto,
    parameters_to_proto,
)
from app.settings import MAX_LIST_ITEMS

TEXTS = ["héllo wörld", "", "a longer text with ✓ unicode"]
InputTensor = ModelInferRequest.InferInputTensor


def wire_request(msg: ModelInferRequest) -> InferRequest:
    return infer_request_from_proto(ModelInferRequest.FromString(msg.SerializeToString()))


def wire_response(msg: ModelInferResponse) -> ModelInferResponse:
    return ModelInferResponse.FromString(msg.SerializeToString())


def as_numpy(response: ModelInferResponse, name: str) -> np.ndarray:
    """What tritonclient.grpc's InferResult.as_numpy returns for a raw response."""
    for index, output in enumerate(response.outputs):
        if output.name == name:
            blob = response.raw_output_contents[index]
            if output.datatype == "BYTES":
                array = np.array(deserialize_bytes(blob), dtype=object)
            else:
                array = np.frombuffer(blob, dtype=NUMPY[output.datatype])
            return array.reshape(list(output.shape))
    raise KeyError(name)


NUMPY = {"INT64": "<i8", "FP32": "<f4", "FP16": "<f2", "INT8": "<i1", "BOOL": "?"}


def typed_input(name: str, datatype: str, shape: list[int], **contents: Any) -> InputTensor:
    return InputTensor(
        name=name, datatype=datatype, shape=shape, contents=InferTensorContents(**contents)
    )


def raw_request(*inputs: tuple[str, str, list[int], bytes]) -> ModelInferRequest:
    msg = ModelInferRequest(model_name="m", id="req-1")
    for name, datatype, shape, blob in inputs:
        msg.inputs.add(name=name, datatype=datatype, shape=shape)
        msg.raw_input_contents.append(blob)
    return msg


# --- requests: round trips -----------------------------------------------------------------


def test_typed_bytes_int64_fp32_round_trip() -> None:
    msg = ModelInferRequest(
        model_name="m",
        id="req-1",
        inputs=[
            typed_input("TEXT", "BYTES", [3], bytes_contents=[t.encode() for t in TEXTS]),
            typed_input("IDS", "INT64", [2, 2], int64_contents=[1, -2, 2**40, 4]),
            typed_input("SCALE", "FP32", [2], fp32_contents=[0.5, -1.25]),
        ],
    )
    request = wire_request(msg)
    assert request.id == "req-1"
    assert request.outputs is None
    assert request.input("TEXT").texts() == TEXTS
    ids = request.input("IDS")
    assert ids.shape == [2, 2]
    assert isinstance(ids.data, np.ndarray)
    assert ids.data.dtype == np.dtype("<i8")
    assert ids.data.tolist() == [1, -2, 2**40, 4]
    scale = request.input("SCALE").data
    assert isinstance(scale, np.ndarray)
    assert scale.dtype == np.dtype("<f4")
    assert scale.tolist() == [0.5, -1.25]


def test_raw_bytes_int64_fp32_round_trip() -> None:
    ids = np.array([[1, -2], [2**40, 4]], dtype="<i8")
    scale = np.array([0.5, -1.25], dtype="<f4")
    msg = raw_request(
        ("TEXT", "BYTES", [3], serialize_bytes([t.encode() for t in TEXTS])),
        ("IDS", "INT64", [2, 2], ids.tobytes()),
        ("SCALE", "FP32", [2], scale.tobytes()),
    )
    request = wire_request(msg)
    assert request.input("TEXT").texts() == TEXTS
    assert np.array_equal(request.input("IDS").data, ids.reshape(-1))
    assert np.array_equal(request.input("SCALE").data, scale)


def test_typed_and_raw_and_json_parse_alike() -> None:
    typed = wire_request(
        ModelInferRequest(
            inputs=[
                typed_input("TEXT", "BYTES", [1, 3], bytes_contents=[t.encode() for t in TEXTS])
            ]
        )
    )
    raw = wire_request(
        raw_request(("TEXT", "BYTES", [1, 3], serialize_bytes([t.encode() for t in TEXTS])))
    )
    body = b'{"inputs": [{"name": "TEXT", "shape": [1, 3], "datatype": "BYTES", "data": [%s]}]}'
    json_request = parse_infer_request(
        body % ", ".join(f'"{t}"' for t in TEXTS).encode(), header_length=None
    )
    for request in (typed, raw, json_request):
        tensor = request.input("TEXT")
        assert (tensor.shape, tensor.texts()) == ([1, 3], TEXTS)


@pytest.mark.parametrize(
    ("datatype", "field", "values", "expected_dtype"),
    [
        ("BOOL", "bool_contents", [True, False], "?"),
        ("INT8", "int_contents", [-128, 127], "<i1"),
        ("INT32", "int_contents", [-(2**31), 2**31 - 1], "<i4"),
        ("UINT16", "uint_contents", [0, 65535], "<u2"),
        ("UINT64", "uint64_contents", [0, 2**64 - 1], "<u8"),
        ("FP64", "fp64_contents", [1e300, -0.1], "<f8"),
    ],
)
def test_every_typed_list(
    datatype: str, field: str, values: list[Any], expected_dtype: str
) -> None:
    request = wire_request(
        ModelInferRequest(inputs=[typed_input("X", datatype, [2], **{field: values})])
    )
    data = request.input("X").data
    assert isinstance(data, np.ndarray)
    assert data.dtype == np.dtype(expected_dtype)
    assert data.tolist() == values


def test_raw_fp16_and_empty_tensors() -> None:
    half = np.array([1.5, -2.0], dtype="<f2")
    request = wire_request(
        raw_request(("H", "FP16", [2], half.tobytes()), ("E", "BYTES", [0], b""))
    )
    assert np.array_equal(request.input("H").data, half)
    assert request.input("E").texts() == []
    empty = wire_request(
        ModelInferRequest(inputs=[InputTensor(name="E", datatype="INT64", shape=[0])])
    )
    assert len(empty.input("E").data) == 0


def test_parameters_requested_outputs_and_id() -> None:
    msg = raw_request(("TEXT", "BYTES", [1], serialize_bytes([b"x"])))
    msg.id = ""
    msg.parameters["top_k"].int64_param = 3
    msg.parameters["temperature"].double_param = 0.5
    msg.parameters["mode"].string_param = "fast"
    msg.parameters["flag"].bool_param = True
    msg.parameters["priority"].uint64_param = 2**63
    wanted = msg.outputs.add(name="B")
    wanted.parameters["binary_data"].bool_param = False  # meaningless on gRPC: ignored
    msg.outputs.add(name="A")
    request = wire_request(msg)
    assert request.id is None
    assert request.parameters == {
        "top_k": 3, "temperature": 0.5, "mode": "fast", "flag": True, "priority": 2**63,
    }  # fmt: skip
    assert request.outputs == [RequestedOutput("B"), RequestedOutput("A")]
    tensor = request.input("TEXT")
    assert tensor.parameters == {}


# --- requests: refusals --------------------------------------------------------------------


def refusal(msg: ModelInferRequest, error: type[Exception] = InvalidInput) -> str:
    with pytest.raises(error) as caught:
        wire_request(msg)
    return str(caught.value)


def test_typed_count_must_match_shape() -> None:
    message = refusal(
        ModelInferRequest(inputs=[typed_input("IDS", "INT64", [2, 2], int64_contents=[1, 2, 3])])
    )
    assert message == "input 'IDS' has shape [2, 2] (4 elements) but carries 3"


def test_raw_count_must_match_shape() -> None:
    message = refusal(raw_request(("IDS", "INT64", [3], np.arange(2, dtype="<i8").tobytes())))
    assert message == "input 'IDS' has shape [3] (3 elements) but carries 2"
    message = refusal(raw_request(("T", "BYTES", [1], serialize_bytes([b"a", b"b"]))))
    assert "more than 1 elements" in message


def test_raw_entries_must_match_inputs() -> None:
    msg = raw_request(("A", "BYTES", [1], serialize_bytes([b"a"])))
    msg.inputs.add(name="B", datatype="BYTES", shape=[1])
    assert "1 raw_input_contents for 2 inputs" in refusal(msg)


def test_raw_and_typed_do_not_mix() -> None:
    msg = raw_request(("A", "BYTES", [1], serialize_bytes([b"a"])))
    msg.inputs.append(typed_input("B", "BYTES", [1], bytes_contents=[b"b"]))
    msg.raw_input_contents.append(b"")
    message = refusal(msg)
    assert "input 'B' has contents while the request carries raw_input_contents" in message


def test_typed_list_must_fit_the_datatype() -> None:
    message = refusal(
        ModelInferRequest(inputs=[typed_input("IDS", "INT64", [1], fp32_contents=[1.0])])
    )
    assert message == (
        "input 'IDS' is INT64 but its contents fill fp32_contents; put INT64 elements in "
        "contents.int64_contents"
    )
    message = refusal(
        ModelInferRequest(inputs=[typed_input("H", "FP16", [1], fp32_contents=[1.0])])
    )
    assert "FP16, which has no typed contents; send it in raw_input_contents" in message
    message = refusal(
        ModelInferRequest(inputs=[typed_input("S", "INT8", [2], int_contents=[1, 300])])
    )
    assert message == "input 'S': 300 does not fit INT8 (-128..127)"


def test_unknown_datatype_and_missing_data() -> None:
    message = refusal(ModelInferRequest(inputs=[typed_input("X", "STRING", [1])]))
    assert message.startswith("input 'X' has datatype 'STRING'; use one of ['BOOL', 'BYTES',")
    message = refusal(ModelInferRequest(inputs=[InputTensor(name="X", datatype="FP32", shape=[2])]))
    assert "carries no data; put its 2 elements in contents.fp32_contents" in message
    assert "at least one tensor" in refusal(ModelInferRequest(model_name="m"))
    assert refusal(ModelInferRequest(inputs=[InputTensor(datatype="FP32")])) == (
        "each input needs a name"
    )


def test_raw_numbers_must_be_whole_elements() -> None:
    message = refusal(raw_request(("X", "FP32", [1], b"\x00\x00\x80")))
    assert message == "input 'X': 3 bytes is not a whole number of FP32 elements"
    message = refusal(raw_request(("T", "BYTES", [1], b"\x05\x00\x00\x00ab")))
    assert "announces a 5-byte element past its end" in message


def test_shape_limits() -> None:
    big = refusal(raw_request(("T", "BYTES", [MAX_LIST_ITEMS + 1], b"")), error=PayloadTooLarge)
    assert f"no tensor may hold more than {MAX_LIST_ITEMS}; split the request" in big
    deep = refusal(raw_request(("T", "BYTES", [1] * (MAX_RANK + 1), b"")))
    assert deep == f"input 'T' has {MAX_RANK + 1} dimensions; at most {MAX_RANK}"
    negative = refusal(raw_request(("T", "BYTES", [-1], b"")))
    assert negative == "input 'T' has a negative dimension in shape [-1]"


def test_non_utf8_bytes_are_refused_as_text() -> None:
    request = wire_request(raw_request(("T", "BYTES", [1], serialize_bytes([b"\xff\xfe"]))))
    with pytest.raises(InvalidInput, match="input 'T' holds bytes that are not UTF-8 text"):
        request.input("T").texts()
    numbers = wire_request(raw_request(("N", "INT64", [1], np.zeros(1, "<i8").tobytes())))
    with pytest.raises(InvalidInput, match="must be BYTES"):
        numbers.input("N").texts()


def test_unsupported_tensor_parameters() -> None:
    msg = raw_request(("T", "BYTES", [1], serialize_bytes([b"a"])))
    msg.outputs.add(name="LABELS").parameters["classification"].int64_param = 2
    assert refusal(msg) == "output 'LABELS': 'classification' is not supported by this server"
    msg = raw_request(("T", "BYTES", [1], serialize_bytes([b"a"])))
    msg.inputs[0].parameters["shared_memory_region"].string_param = "region"
    assert "input 'T': 'shared_memory_region' is not supported" in refusal(msg)
    assert "contents or raw_input_contents" in refusal(msg)


def test_parameter_without_value() -> None:
    msg = raw_request(("T", "BYTES", [1], serialize_bytes([b"a"])))
    msg.parameters["empty"].CopyFrom(InferParameter())
    assert refusal(msg) == (
        "parameter 'empty' of the request has no value; set one of bool_param, int64_param, "
        "uint64_param, double_param or string_param"
    )


# --- responses -----------------------------------------------------------------------------

OUTPUTS = [
    OutputTensor("LABEL", "BYTES", [2], ["positive", "négatif ✓"]),
    OutputTensor("SCORES", "FP32", [2, 2], np.array([[0.25, 0.75], [0.5, 0.5]], dtype="<f4")),
    OutputTensor("IDS", "INT64", [2], np.array([3, 2**40], dtype="<i8")),
]


def test_raw_response_reads_like_tritonclient() -> None:
    request = InferRequest(inputs=[], outputs=None, parameters={}, id="req-7")
    response = wire_response(infer_response_to_proto("m", "1", request, OUTPUTS))
    assert (response.model_name, response.model_version, response.id) == ("m", "1", "req-7")
    assert [o.name for o in response.outputs] == ["LABEL", "SCORES", "IDS"]
    assert len(response.raw_output_contents) == 3
    assert not any(o.HasField("contents") for o in response.outputs)
    assert as_numpy(response, "LABEL").tolist() == [t.encode() for t in OUTPUTS[0].data]
    assert np.array_equal(as_numpy(response, "SCORES"), OUTPUTS[1].data)
    assert as_numpy(response, "IDS").tolist() == [3, 2**40]


def test_typed_response() -> None:
    request = InferRequest(inputs=[], outputs=None, parameters={})
    response = wire_response(infer_response_to_proto("m", "1", request, OUTPUTS, raw=False))
    assert response.id == ""
    assert not response.raw_output_contents
    label, scores, ids = response.outputs
    assert list(label.contents.bytes_contents) == [t.encode() for t in OUTPUTS[0].data]
    assert list(scores.shape) == [2, 2]
    assert list(scores.contents.fp32_contents) == [0.25, 0.75, 0.5, 0.5]
    assert list(ids.contents.int64_contents) == [3, 2**40]


def test_typed_response_with_fp16_goes_raw_whole() -> None:
    half = OutputTensor("H", "FP16", [1], np.array([1.5], dtype="<f2"))
    request = InferRequest(inputs=[], outputs=None, parameters={})
    response = wire_response(
        infer_response_to_proto("m", "1", request, [OUTPUTS[0], half], raw=False)
    )
    assert len(response.raw_output_contents) == 2
    assert as_numpy(response, "H").tolist() == [1.5]


def test_only_requested_outputs_in_request_order() -> None:
    request = InferRequest(
        inputs=[], outputs=[RequestedOutput("IDS"), RequestedOutput("LABEL")], parameters={}
    )
    response = wire_response(
        infer_response_to_proto("m", "1", request, OUTPUTS, parameters={"cached": True})
    )
    assert [o.name for o in response.outputs] == ["IDS", "LABEL"]
    assert as_numpy(response, "LABEL").tolist() == [b"positive", "négatif ✓".encode()]
    assert as_numpy(response, "IDS").tolist() == [3, 2**40]
    assert parameters_from_proto(response.parameters, "the response") == {"cached": True}


def test_unknown_requested_output() -> None:
    request = InferRequest(inputs=[], outputs=[RequestedOutput("NOPE")], parameters={})
    with pytest.raises(InvalidInput) as caught:
        infer_response_to_proto("m", "1", request, OUTPUTS)
    assert str(caught.value) == (
        "model 'm' has no output 'NOPE'; its outputs are ['LABEL', 'SCORES', 'IDS'] "
        "(ModelMetadata lists them)"
    )


# --- parameters ----------------------------------------------------------------------------


def test_parameters_both_ways() -> None:
    values = {"b": False, "i": -5, "u": 2**64 - 1, "f": 1.5, "s": "x"}
    params = parameters_to_proto(values)
    assert params["b"].WhichOneof("parameter_choice") == "bool_param"
    assert params["i"].WhichOneof("parameter_choice") == "int64_param"
    assert params["u"].WhichOneof("parameter_choice") == "uint64_param"
    assert params["f"].WhichOneof("parameter_choice") == "double_param"
    assert params["s"].WhichOneof("parameter_choice") == "string_param"
    response = wire_response(ModelInferResponse(parameters=params))
    assert parameters_from_proto(response.parameters, "the response") == values


def test_parameters_that_do_not_fit() -> None:
    with pytest.raises(InvalidInput, match="a list; a gRPC parameter holds one bool"):
        parameter_to_proto("k", [1, 2])
    with pytest.raises(InvalidInput, match="outside 64-bit integers"):
        parameter_to_proto("k", 2**64)
    with pytest.raises(InvalidInput, match="outside 64-bit integers"):
        parameter_to_proto("k", -(2**63) - 1)
