"""The offline bundle's choices (bench/offline_bundle.py): what ships, what the host keeps, and
the venv that sees the host python's packages. Nothing here reaches the network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import offline_bundle as ob

ROOT = Path(__file__).resolve().parents[2]
PINS = ob.project_pins(ROOT / "pyproject.toml")


def test_every_runtime_dependency_is_shipped_left_out_or_the_hosts() -> None:
    assert ob.unclassified(PINS) == [], "place new dependencies in bench/offline_bundle.py"
    groups = [set(ob.HOST_STACK), set(ob.SERVE), set(ob.EVAL), set(ob.LEFT_OUT)]
    assert sum(len(g) for g in groups) == len(set().union(*groups)), "a package in two groups"


def test_the_h200_bundle_asks_only_for_what_that_host_lacks() -> None:
    requirements = ob.shipped_requirements(PINS, ob.read_have(None), with_eval=True)
    names = {ob.requirement_name(r) for r in requirements}
    wanted = {"fastapi", "starlette", "pydantic", "pydantic-settings", "uvicorn", "orjson",
              "httptools", "opentelemetry-sdk", "fastapi-offline", "rouge-score"}  # fmt: skip
    assert wanted <= names
    assert not names & {*ob.HOST_STACK, "onnxruntime", "sentencepiece", "pyyaml", "protobuf"}
    assert not names & set(ob.LEFT_OUT)
    assert all(requirement in PINS.values() for requirement in requirements)  # pinned as built


def test_no_eval_leaves_evaluation_out() -> None:
    requirements = ob.shipped_requirements(PINS, set(), with_eval=False)
    assert not {ob.requirement_name(r) for r in requirements} & set(ob.EVAL)


def test_a_gpu_build_of_onnxruntime_counts_as_onnxruntime() -> None:
    assert ob.host_has({"onnxruntime-gpu"}, "onnxruntime")
    requirements = ob.shipped_requirements(PINS, {"onnxruntime-gpu"}, with_eval=False)
    assert "onnxruntime" not in {ob.requirement_name(r) for r in requirements}


@pytest.mark.parametrize(
    ("file_name", "have", "fallback", "role"),
    [
        ("pip-26.3-py3-none-any.whl", {"pip"}, True, "tool"),
        ("fastapi-0.165.0-py3-none-any.whl", set(), True, "dependency"),
        ("anyio-4.16.0-py3-none-any.whl", {"anyio"}, True, "fallback"),
        ("anyio-4.16.0-py3-none-any.whl", {"anyio"}, False, None),
        ("regex-2026.11.19-cp312-cp312-manylinux2014_x86_64.whl", {"regex"}, True, None),
        # the host stack never ships, whatever the have list says
        ("numpy-2.5.5-cp312-cp312-manylinux_2_28_x86_64.whl", set(), True, None),
        ("safetensors-0.8.0-cp38-abi3-manylinux_2_17_x86_64.whl", set(), True, None),
    ],
)
def test_what_each_downloaded_wheel_becomes(
    file_name: str, have: set[str], fallback: bool, role: str | None
) -> None:
    name, _ = ob.wheel_name(file_name)
    assert ob.role_of(name, file_name, have, fallback) == role


def test_wheel_names_normalize() -> None:
    assert ob.wheel_name("fastapi_offline-1.7.7-py3-none-any.whl") == ("fastapi-offline", "1.7.7")
    assert ob.wheel_name("six-1.17.0-py2.py3-none-any.whl") == ("six", "1.17.0")
    assert ob.is_pure("six-1.17.0-py2.py3-none-any.whl")
    assert not ob.is_pure("protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl")
    with pytest.raises(ValueError, match="not a wheel"):
        ob.wheel_name("rouge_score-0.1.2.tar.gz")


def test_have_files_take_names_freeze_lines_and_comments(tmp_path: Path) -> None:
    have = tmp_path / "have.txt"
    have.write_text("# the host\nPyYAML==6.0.3\nprometheus_client\n\ntorch @ file:///x.whl\n")
    assert ob.read_have(have) == {"pyyaml", "prometheus-client", "torch"}


def test_platform_tags_reach_down_from_the_hosts_glibc() -> None:
    tags = ob.platform_tags("x86_64", "2.28")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_29_x86_64" not in tags


def test_pips_missing_wheel_message_names_the_requirement() -> None:
    stderr = "ERROR: No matching distribution found for rouge-score==0.1.2\n"
    match = ob.MISSING.search(stderr)
    assert match is not None
    assert match.group(1) == "rouge-score==0.1.2"


def test_keep_wheels_moves_what_ships_and_reports_the_rest(tmp_path: Path) -> None:
    downloaded, wheels = tmp_path / "downloaded", tmp_path / "wheels"
    downloaded.mkdir()
    wheels.mkdir()
    for name in ("fastapi-0.165.0-py3-none-any.whl", "anyio-4.16.0-py3-none-any.whl",
                 "numpy-2.5.5-cp312-cp312-manylinux_2_28_x86_64.whl"):  # fmt: skip
        (downloaded / name).write_bytes(b"wheel")
    kept, dropped = ob.keep_wheels(downloaded, wheels, {"anyio", "numpy"}, fallback=False)
    assert [k.name for k in kept] == ["fastapi"]
    assert sorted(d["name"] for d in dropped) == ["anyio", "numpy"]
    assert sorted(p.name for p in wheels.iterdir()) == ["fastapi-0.165.0-py3-none-any.whl"]
    (downloaded / "left-1.0.tar.gz").write_bytes(b"sdist")
    with pytest.raises(SystemExit, match="non-wheels"):
        ob.keep_wheels(downloaded, wheels, set(), fallback=False)


def test_install_refuses_a_python_of_another_version_or_without_torch() -> None:
    manifest = {"target": {"python_version": "3.12", "arch": "x86_64"},
                "host_must_have": list(ob.HOST_STACK)}  # fmt: skip
    full = dict.fromkeys(ob.HOST_STACK, "1")
    with pytest.raises(SystemExit, match=r"for Python 3\.12"):
        ob.check_host(manifest, {"version": "3.11", "machine": "x86_64", "versions": full}, "py")
    host = {"version": "3.12", "machine": "x86_64", "versions": {**full, "torch": None}}
    with pytest.raises(SystemExit, match="lacks torch"):
        ob.check_host(manifest, host, "py")


def test_the_new_venv_sees_the_host_pythons_packages_even_when_that_is_a_venv(
    tmp_path: Path,
) -> None:
    """The H200's python is itself a venv: --system-site-packages would show its base
    interpreter's packages, not the venv's torch. This test runs in .venv, also a venv."""
    venv_python = ob.make_venv(sys.executable, tmp_path / "venv", ob.probe(sys.executable, []))
    code = "import yaml, sys; print(yaml.__file__, sys.prefix)"
    host_yaml, _ = where(sys.executable, code)
    venv_yaml, prefix = where(str(venv_python), code)
    assert venv_yaml == host_yaml  # the host's own copy
    assert prefix == str(tmp_path / "venv")


def where(python: str, code: str) -> list[str]:
    done = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()
