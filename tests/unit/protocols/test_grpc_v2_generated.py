"""The committed gRPC modules are what inference.proto generates, and its wire matches Triton's.

The generated modules must not drift from the .proto (regenerate: make grpc-gen), and every
message, field number, type, enum value and method we declare must be the one tritonclient's
own descriptors declare, or tritonclient.grpc would misread us. Those descriptors are read from
the serialized bytes in tritonclient's installed *_pb2.py files, without importing them:
tritonclient.grpc needs protobuf<7, and its types share our full names (inference.*), so the
two cannot be loaded into one process's descriptor pool.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from app.protocols.grpc_v2 import inference_pb2, inference_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = Path("app/protocols/grpc_v2")
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")
METHODS = [
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    "ModelConfig", "RepositoryIndex",
]  # fmt: skip


def test_committed_modules_match_the_proto(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_grpc.sh"), str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in GENERATED:
        fresh = (tmp_path / PACKAGE / name).read_text()
        committed = (ROOT / PACKAGE / name).read_text()
        assert fresh == committed, f"{PACKAGE / name} is stale: run `make grpc-gen` and commit it"


def test_generated_imports_are_package_relative() -> None:
    source = (ROOT / PACKAGE / "inference_pb2_grpc.py").read_text()
    assert "from app.protocols.grpc_v2 import inference_pb2 " in source
    assert inference_pb2.DESCRIPTOR.package == "inference"
    service = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert [m.name for m in service.methods] == METHODS
    assert service.full_name == "inference.GRPCInferenceService"
    assert hasattr(inference_pb2_grpc, "add_GRPCInferenceServiceServicer_to_server")


def _triton_file(name: str) -> descriptor_pb2.FileDescriptorProto:
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("tritonclient is a dev dependency: pip install -e '.[dev]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / name
    found = re.search(r"AddSerializedFile\((b'.*?')\)\n", path.read_text(), re.S)
    assert found, f"no serialized descriptor in {path}"
    return descriptor_pb2.FileDescriptorProto.FromString(ast.literal_eval(found.group(1)))


def _index(file: descriptor_pb2.FileDescriptorProto) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every message, enum and service by full name -> what the wire depends on, by member."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}

    def walk(prefix: str, messages: Any, enums: Any) -> None:
        for enum in enums:
            out[prefix + enum.name] = ("enum", {v.name: v.number for v in enum.value})
        for message in messages:
            name = prefix + message.name
            fields: dict[str, Any] = {
                f.name: (
                    f.number,
                    f.type,
                    f.label,
                    f.type_name,
                    message.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None,
                )
                for f in message.field
            }
            fields["<map_entry>"] = message.options.map_entry
            out[name] = ("message", fields)
            walk(name + ".", message.nested_type, message.enum_type)

    walk(f".{file.package}.", file.message_type, file.enum_type)
    for service in file.service:
        out[f"service {service.name}"] = (
            "service",
            {
                m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
                for m in service.method
            },
        )
    return out


def test_wire_matches_tritonclients_descriptors() -> None:
    theirs = _index(_triton_file("service_pb2.py")) | _index(_triton_file("model_config_pb2.py"))
    ours_file = descriptor_pb2.FileDescriptorProto()
    inference_pb2.DESCRIPTOR.CopyToProto(ours_file)
    assert ours_file.package == "inference"
    assert ours_file.syntax == "proto3"
    ours = _index(ours_file)
    assert len(ours) > 30
    for name, (kind, members) in ours.items():
        assert name in theirs, f"{name} is not in Triton's protocol"
        their_kind, their_members = theirs[name]
        assert kind == their_kind, name
        for member, wire in members.items():
            assert member in their_members, f"{name}.{member} is not in Triton's protocol"
            their_wire = their_members[member]
            assert wire == their_wire, f"{name}.{member}: ours {wire}, Triton's {their_wire}"
