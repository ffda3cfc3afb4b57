"""An offline wheel bundle of nlp-serve for a host whose Python already holds the model stack.

Such a host (a lent GPU machine, an air-gapped deployment) has CUDA PyTorch, transformers,
tokenizers, huggingface-hub, safetensors and numpy, but not the web stack. `build` runs on a
networked machine and downloads, for the host's Python and platform, only the wheels the host
lacks, plus nlp-serve itself as a wheel; `install` runs on the host with no network and makes
a virtual environment in which the host's own packages are visible and the bundle's are
installed over them. `have` lists what a Python holds, for the next build's --have.

Only the standard library is used: the host runs this file before anything is installed, and
a bundle carries a copy of it (run it as `python offline_bundle.py ...` or
`python -m bench.offline_bundle ...`; scripts/offline-bundle.sh does either).

What is shipped and why (every runtime dependency in pyproject.toml is in one group, so a new
one must be placed; tests/unit/test_offline_bundle.py checks it):
- HOST_STACK: never shipped. The host's own builds are the point (CUDA torch, and the
  transformers that goes with it); `install` refuses a host without them.
- SERVE: the service and the GPU check (FastAPI app, the gRPC surface, batcher, metrics,
  tracing, /docs assets) and the ONNX backend with its export: onnx, onnxscript (torch.onnx's
  dynamo exporter, which writes the seq2seq graphs) and ONNX Runtime (which runs the graphs
  and whose optimiser and quantiser optimise and quantise them). `nlp-serve export` and
  `export: true` work on the host with its own torch and transformers; nothing here caps
  transformers.
- EVAL: `nlp-serve eval` (scikit-learn, sacrebleu, rouge-score); on by default, --no-eval
  leaves it out.
- LEFT_OUT: the OpenVINO backend (openvino, nncf): a CPU engine, of no use on a GPU host,
  and the largest wheels nlp-serve would ship (openvino alone ~180 MiB installed; nncf pulls
  in networkx, ninja, pydot, rich and more). A model with backend: openvino fails to load
  there, naming the package, and backend: auto leaves OpenVINO out of its candidates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FORMAT = "nlp-serve-offline-bundle/1"
MANIFEST = "manifest.json"
REQUIREMENTS = "requirements.txt"
WHEELS = "wheels"
# The pip the host's environment is bootstrapped with (the host's own python may have no pip
# and no ensurepip); any pip that installs wheels would do, this one is fixed so builds repeat.
PIP = "pip==26.3"

HOST_STACK = ("torch", "transformers", "tokenizers", "huggingface-hub", "safetensors", "numpy")
SERVE = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "pydantic-settings",
    "pyyaml",
    "orjson",
    "prometheus-client",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "protobuf",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "sentencepiece",
    "fastapi-offline",
    "grpcio",
    "grpcio-health-checking",
    "grpcio-reflection",
)
EVAL = ("scikit-learn", "sacrebleu", "rouge-score")
LEFT_OUT = {
    "openvino": "OpenVINO backend, a CPU engine (~180 MiB installed); use onnx or torch here",
    "nncf": "OpenVINO int8 quantisation (and its dependencies); only with openvino",
}
# Packages that must never be downloaded: several GB of CUDA wheels come with them.
NEVER_DOWNLOAD = ("torch", "triton")
# What the lent H200 host's python (3.12, /opt/torch/.venv) holds, as far as nlp-serve cares:
# the packages named for it, and what those require (httpx: httpcore, sniffio, certifi, idna;
# scikit-learn: scipy, joblib, threadpoolctl; sacrebleu: portalocker, tabulate, colorama, lxml;
# requests: urllib3, charset-normalizer; jinja2: markupsafe; huggingface-hub 1.x: click;
# torch: sympy, mpmath, which onnxscript's onnx-ir needs too).
DEFAULT_HAVE = (
    "torch", "transformers", "tokenizers", "huggingface-hub", "safetensors", "numpy", "onnx",
    "onnxruntime", "sentencepiece", "prometheus-client", "pyyaml", "httpx", "httpcore", "anyio",
    "sniffio", "idna", "certifi", "h11", "uvloop", "grpcio", "protobuf", "typing-extensions",
    "packaging", "scikit-learn", "scipy", "joblib", "threadpoolctl", "sacrebleu", "portalocker",
    "tabulate", "colorama", "lxml", "psutil", "requests", "urllib3", "charset-normalizer",
    "filelock", "fsspec", "jinja2", "markupsafe", "tqdm", "regex", "click", "sympy", "mpmath",
)  # fmt: skip
MISSING = re.compile(r"No matching distribution found for (\S+)")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: fastapi_offline == FastAPI-Offline."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(file_name: str) -> tuple[str, str]:
    """(normalized distribution name, version) of a wheel file name."""
    parts = file_name.removesuffix(".whl").split("-")
    if len(parts) < 5:
        raise ValueError(f"not a wheel file name: {file_name}")
    return normalize(parts[0]), parts[1]


def is_pure(file_name: str) -> bool:
    """Whether a wheel runs on any Python 3 and platform (py3-none-any, py2.py3-none-any)."""
    python, abi, platform_tag = file_name.removesuffix(".whl").split("-")[-3:]
    return python.startswith("py") and abi == "none" and platform_tag == "any"


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0])


def read_have(path: Path | None) -> set[str]:
    """Package names, one a line (a `name==version` or `pip freeze` line is fine, # comments)."""
    if path is None:
        return {normalize(name) for name in DEFAULT_HAVE}
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(requirement_name(line))
    return names


def host_has(have: set[str], name: str) -> bool:
    """Whether the host provides `name`: onnxruntime-gpu (or another build) provides
    onnxruntime's module, and the CPU wheel must never shadow it."""
    if name == "onnxruntime":
        return any(n == name or n.startswith("onnxruntime-") for n in have)
    return name in have


def project_pins(pyproject: Path) -> dict[str, str]:
    """nlp-serve's runtime dependencies: normalized name -> the pinned requirement."""
    import tomllib

    project = tomllib.loads(pyproject.read_text())["project"]
    return {requirement_name(req): req for req in project["dependencies"]}


def unclassified(pins: Iterable[str]) -> list[str]:
    """Runtime dependencies in no group: each must be shipped, left out or the host's."""
    known = {*HOST_STACK, *SERVE, *EVAL, *LEFT_OUT}
    return sorted(name for name in pins if name not in known)


def shipped_requirements(pins: dict[str, str], have: set[str], with_eval: bool) -> list[str]:
    """The pinned top-level requirements the bundle must satisfy on the host."""
    missing = [name for name in (*SERVE, *EVAL) if name not in pins]
    if missing or unclassified(pins):
        raise SystemExit(
            f"offline-bundle: pyproject.toml and bench/offline_bundle.py disagree: not pinned "
            f"{missing}, in no group {unclassified(pins)}; place each in bench/offline_bundle.py"
        )
    names = [*SERVE, *(EVAL if with_eval else ())]
    return [pins[name] for name in names if not host_has(have, name)]


def platform_tags(arch: str, glibc: str) -> list[str]:
    """manylinux tags a host with this glibc accepts (manylinux_2_5 ... glibc, and the legacy
    aliases): pip does not widen a manylinux_2_X --platform by itself."""
    major, minor = (int(part) for part in glibc.split("."))
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{alias}_{arch}" for m, alias in legacy.items() if m <= minor]
    return tags


@dataclass
class Target:
    python_version: str
    implementation: str
    platforms: list[str]

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version,
                "--implementation", self.implementation]  # fmt: skip
        for tag in self.platforms:
            args += ["--platform", tag]
        return args


@dataclass
class WheelEntry:
    file: str
    name: str
    version: str
    bytes: int
    sha256: str
    role: str  # project | dependency | fallback | tool


@dataclass
class Manifest:
    format: str
    created: str
    target: dict[str, Any]
    project: str
    requirements: list[str]
    wheels: list[WheelEntry]
    total_bytes: int
    dropped_host_has: list[dict[str, Any]]
    built_from_sdist: list[str]
    left_out: dict[str, str]
    host_must_have: list[str]
    have: list[str]
    build_seconds: float = 0.0


def run(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    shown = ("<script>" if "\n" in part else part for part in command)
    print("+ " + " ".join(shown), flush=True)
    return subprocess.run(command, text=True, check=False, **kwargs)


def pip(python: str, *args: str) -> list[str]:
    return [python, "-m", "pip", *args]


def build_project_wheel(python: str, root: Path, out: Path) -> Path:
    done = run(pip(python, "wheel", "--no-deps", "--quiet", "-w", str(out), str(root)))
    if done.returncode:
        raise SystemExit("offline-bundle: building the nlp-serve wheel failed (above)")
    wheels = sorted(out.glob("nlp_serve-*.whl"))
    if not wheels:
        raise SystemExit(f"offline-bundle: no nlp_serve wheel appeared in {out}")
    return wheels[-1]


def build_pure_wheel(python: str, requirement: str, out: Path) -> Path:
    """A wheel built here from the sdist of a package with no wheel on the index: only
    accepted when it is pure Python (it then runs on the host's Python and platform too)."""
    with tempfile.TemporaryDirectory() as tmp:
        done = run(pip(python, "wheel", "--no-deps", "--quiet", "-w", tmp, requirement))
        built = sorted(Path(tmp).glob("*.whl"))
        if done.returncode or not built:
            raise SystemExit(f"offline-bundle: {requirement} has no wheel for the host and "
                             "building one from its sdist failed (above)")  # fmt: skip
        wheel = built[0]
        if not is_pure(wheel.name):
            raise SystemExit(
                f"offline-bundle: {requirement} has no wheel for the host's Python and "
                f"platform, and its sdist builds a platform wheel ({wheel.name}); build it on "
                "a machine like the host and put it in --find-links"
            )
        return Path(shutil.copy2(wheel, out / wheel.name))


def download(python: str, requirements: list[str], target: Target, dest: Path,
             local: Path) -> list[str]:  # fmt: skip
    """Download the requirements' whole dependency tree as wheels for the target into dest;
    pure-Python packages published only as sdists are built into `local` first. Returns the
    requirements that were built so."""
    built: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "never.txt"
        constraints.write_text("".join(f"{name}<0\n" for name in NEVER_DOWNLOAD))
        for _ in range(10):  # each round builds at most one missing sdist
            done = run(
                pip(python, "download", "--dest", str(dest), "--find-links", str(local),
                    "--constraint", str(constraints), *target.pip_args(), *requirements),
                capture_output=True,
            )  # fmt: skip
            if done.returncode == 0:
                return built
            missing = MISSING.search(done.stderr)
            if missing is None or missing.group(1) in built:
                print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", flush=True)
                raise SystemExit("offline-bundle: pip download failed (above)")
            print(f"  no wheel of {missing.group(1)} for the target: building it", flush=True)
            requirement = missing.group(1)
            if requirement_name(requirement) in NEVER_DOWNLOAD:
                raise SystemExit(
                    f"offline-bundle: something in the bundle needs {requirement}, which the "
                    "host must provide; pip's output above says what"
                )
            build_pure_wheel(python, requirement, local)
            built.append(requirement)
    raise SystemExit("offline-bundle: too many packages without wheels")


def entry(path: Path, role: str) -> WheelEntry:
    name, version = wheel_name(path.name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return WheelEntry(path.name, name, version, path.stat().st_size, digest, role)


def role_of(name: str, file_name: str, have: set[str], fallback: bool) -> str | None:
    """What a downloaded wheel is in the bundle, or None when it stays out.

    A package the host has stays out, except a pure-Python one when `fallback`: pip installs
    it only if the host's own copy is older than the bundle's packages need (pip keeps an
    installed version that satisfies), so a host a little behind does not fail the install.
    The host stack never ships, fallback or not."""
    if name == "pip":
        return "tool"
    if name in HOST_STACK:
        return None
    if not host_has(have, name):
        return "dependency"
    return "fallback" if fallback and is_pure(file_name) else None


def keep_wheels(
    downloaded: Path, wheels: Path, have: set[str], fallback: bool
) -> tuple[list[WheelEntry], list[dict[str, Any]]]:
    """Move the wheels the bundle ships into it; report the ones left to the host."""
    kept, dropped = [], []
    for path in sorted(downloaded.glob("*.whl")):
        name, version = wheel_name(path.name)
        role = role_of(name, path.name, have, fallback)
        if role is None:
            dropped.append({"name": name, "version": version, "bytes": path.stat().st_size})
            continue
        kept.append(entry(Path(shutil.move(path, wheels / path.name)), role))
    stray = sorted(p.name for p in downloaded.iterdir() if not p.name.endswith(".whl"))
    if stray:
        raise SystemExit(f"offline-bundle: pip downloaded non-wheels {stray}; none may ship")
    return kept, dropped


def copy_installer(root: Path, out: Path) -> None:
    """The bundle installs itself: offline-bundle.sh and this file go in beside the wheels."""
    shutil.copy2(Path(__file__), out / "offline_bundle.py")
    script = root / "scripts" / "offline-bundle.sh"
    if script.is_file():
        shutil.copy2(script, out / "offline-bundle.sh")


def build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    root = Path(args.root).resolve()
    out = Path(args.out).resolve()
    wheels = out / WHEELS
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"offline-bundle: {out} is not empty; give a new directory")
    wheels.mkdir(parents=True, exist_ok=True)
    have = read_have(Path(args.have) if args.have else None)
    requirements = shipped_requirements(project_pins(root / "pyproject.toml"), have,
                                        with_eval=not args.no_eval)  # fmt: skip
    target = Target(args.python_version, "cp", platform_tags(args.arch, args.glibc))
    python = args.builder or sys.executable
    project = entry(build_project_wheel(python, root, wheels), "project")
    with tempfile.TemporaryDirectory() as tmp:
        downloaded, local = Path(tmp) / "downloaded", Path(tmp) / "built"
        downloaded.mkdir()
        local.mkdir()
        built = download(python, [*requirements, PIP], target, downloaded, local)
        kept, dropped = keep_wheels(downloaded, wheels, have, not args.no_fallback)
    (out / REQUIREMENTS).write_text("".join(f"{req}\n" for req in requirements))
    copy_installer(root, out)
    entries = [project, *kept]
    manifest = Manifest(
        format=FORMAT,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        target={**asdict(target), "glibc": args.glibc, "arch": args.arch},
        project=project.file,
        requirements=requirements,
        wheels=entries,
        total_bytes=sum(e.bytes for e in entries),
        dropped_host_has=dropped,
        built_from_sdist=built,
        left_out={**LEFT_OUT, **({} if not args.no_eval else dict.fromkeys(EVAL, "--no-eval"))},
        host_must_have=list(HOST_STACK),
        have=sorted(have),
        build_seconds=round(time.monotonic() - started, 1),
    )
    (out / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    print_summary(manifest, out)
    return 0


def print_summary(manifest: Manifest, out: Path) -> None:
    target = manifest.target
    print(f"\noffline bundle for CPython {target['python_version']} {target['arch']}, "
          f"glibc >= {target['glibc']}: {out}")  # fmt: skip
    fallback = [w for w in manifest.wheels if w.role == "fallback"]
    for wheel in sorted(manifest.wheels, key=lambda w: -w.bytes):
        if wheel.role != "fallback":
            print(f"  {wheel.bytes / 2**20:6.2f} MiB  {wheel.name} {wheel.version} ({wheel.role})")
    if fallback:
        names = ", ".join(w.name for w in fallback)
        size = sum(w.bytes for w in fallback) / 2**20
        print(f"  {size:6.2f} MiB  fallback, installed only where the host's copy is too old: "
              f"{names}")  # fmt: skip
    print(f"  {manifest.total_bytes / 2**20:6.2f} MiB in {len(manifest.wheels)} wheels, built "
          f"in {manifest.build_seconds:.0f} s")  # fmt: skip
    dropped = ", ".join(d["name"] for d in manifest.dropped_host_has) or "none"
    print(f"  left to the host (it has them): {dropped}")
    print(f"  not in the bundle: {', '.join(manifest.left_out)}")


# -- on the host -------------------------------------------------------------------------------

PROBE = """
import importlib.metadata as m, json, platform, site, sys
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({
    "version": "%d.%d" % sys.version_info[:2], "machine": platform.machine(),
    "site": site.getsitepackages(),
    "versions": {name: version(name) for name in sys.argv[1:]},
}))
"""


def probe(python: str, names: Sequence[str]) -> dict[str, Any]:
    done = subprocess.run([python, "-I", "-c", PROBE, *names], capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"offline-bundle: could not run {python}: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def check_host(manifest: dict[str, Any], host: dict[str, Any], python: str) -> None:
    target = manifest["target"]
    if host["version"] != target["python_version"]:
        raise SystemExit(f"offline-bundle: this bundle is for Python {target['python_version']} "
                         f"but {python} is {host['version']}; build one with "
                         f"--python-version {host['version']}")  # fmt: skip
    if host["machine"] != target["arch"]:
        raise SystemExit(f"offline-bundle: this bundle is for {target['arch']}, "
                         f"{python} runs on {host['machine']}")  # fmt: skip
    absent = [name for name in manifest["host_must_have"] if host["versions"].get(name) is None]
    if absent:
        raise SystemExit(f"offline-bundle: {python} lacks {', '.join(absent)}; the bundle "
                         "leaves the model stack to the host (install it there first)")  # fmt: skip


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"offline-bundle: no site-packages in {venv}")
    return found[0]


def make_venv(python: str, venv: Path, host: dict[str, Any]) -> Path:
    """A venv that sees exactly what the host python sees, its own packages first.

    The host python may itself be a venv (the H200's is /opt/torch/.venv): then
    --system-site-packages would show the base interpreter's site-packages, not the host
    venv's torch. So the new venv gets a .pth that adds the host python's own site
    directories (with their .pth files) after its own."""
    if not (venv / "bin" / "python").exists():
        done = run([python, "-m", "venv", "--without-pip", str(venv)])
        if done.returncode:
            raise SystemExit(f"offline-bundle: could not create {venv} (above)")
    lines = [f"import site; site.addsitedir({path!r})\n" for path in host["site"]]
    (site_packages(venv) / "_nlp_serve_host_site.pth").write_text("".join(lines))
    return venv / "bin" / "python"


def offline_pip(python: Path, *args: str, bootstrap: Path | None = None) -> None:
    """pip with no index, no configuration and no PIP_* variables: only the bundle."""
    runner = [str(python), str(bootstrap / "pip")] if bootstrap else [str(python), "-m", "pip"]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    done = run([*runner, "--isolated", "--disable-pip-version-check", "install", "--no-index",
                *args], env=env)  # fmt: skip
    if done.returncode:
        raise SystemExit(
            "offline-bundle: the offline install failed (above). 'No matching distribution' "
            "names a package the bundle left to the host that it lacks or has too old: build "
            "again with --have from `offline-bundle.sh have --python PY` run on the host"
        )


VERIFY = """
import importlib.metadata as m
import app.main, app.cli, app.registry.model, app.batching.batcher, app.runtimes.torch
import torch, transformers
import onnx, onnxruntime, onnxscript  # the ONNX export and runtime
print("nlp-serve", m.version("nlp-serve"), "from", app.__file__)
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
      "| transformers", transformers.__version__)
print("onnx", onnx.__version__, "| onnxscript", m.version("onnxscript"), "| onnxruntime",
      onnxruntime.__version__, onnxruntime.get_available_providers())
"""


def install(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle).resolve()
    manifest = json.loads((bundle / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise SystemExit(f"offline-bundle: {bundle / MANIFEST} is not a {FORMAT} manifest")
    python = args.python or sys.executable
    host = probe(python, manifest["host_must_have"])
    check_host(manifest, host, python)
    venv = Path(args.venv).resolve()
    venv_python = make_venv(python, venv, host)
    wheels = bundle / WHEELS
    tool = next(w["file"] for w in manifest["wheels"] if w["role"] == "tool")
    links = ["--find-links", str(wheels)]
    offline_pip(venv_python, "--quiet", "--ignore-installed", "--no-deps", str(wheels / tool),
                bootstrap=wheels / tool)  # fmt: skip
    offline_pip(venv_python, "--quiet", *links, "-r", str(bundle / REQUIREMENTS))
    offline_pip(venv_python, "--quiet", "--no-deps", "--force-reinstall",
                str(wheels / manifest["project"]))  # fmt: skip
    done = run([str(venv_python), "-I", "-c", VERIFY], cwd="/")
    if done.returncode:
        raise SystemExit("offline-bundle: nlp-serve does not import in the new environment")
    print(f"\ninstalled into {venv} (the host's {', '.join(manifest['host_must_have'])} "
          f"are {python}'s own)")  # fmt: skip
    print("not installed (what needs one fails to load, naming it):")
    for name, why in manifest["left_out"].items():
        print(f"  {name}: {why}")
    print(f"next: scripts/gpu-check.sh --python {venv_python}")
    return 0


def have(args: argparse.Namespace) -> int:
    """The distributions a python can import, one a line: the next build's --have."""
    code = (
        "import importlib.metadata as m, re; print('\\n'.join(sorted({re.sub('[-_.]+', '-', "
        "d.metadata['Name']).lower() for d in m.distributions() if d.metadata['Name']})))"
    )
    return subprocess.run([args.python or sys.executable, "-I", "-c", code], check=False).returncode


def parser() -> argparse.ArgumentParser:
    root = Path(__file__).resolve().parents[1]
    main = argparse.ArgumentParser(
        prog="offline-bundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = main.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="download the wheels a host lacks (needs network)")
    b.add_argument("out", help="a new directory for the bundle")
    b.add_argument("--python-version", default="3.12", help="the host's python (default 3.12)")
    b.add_argument("--arch", default="x86_64")
    b.add_argument(
        "--glibc",
        default="2.28",
        help="no wheel may need a newer glibc (default 2.28, CUDA torch's own floor)",
    )
    b.add_argument("--have", help="file of package names the host has (default: the H200's)")
    b.add_argument("--no-eval", action="store_true", help="leave out `nlp-serve eval`'s deps")
    b.add_argument(
        "--no-fallback",
        action="store_true",
        help="leave out the pure-Python wheels of packages the host has (its copies must do)",
    )
    b.add_argument("--builder", help="python whose pip downloads (default: this one)")
    b.add_argument("--root", default=str(root), help="the nlp-serve checkout")
    b.set_defaults(run=build)
    i = commands.add_parser("install", help="install a bundle offline into a new venv")
    i.add_argument("bundle")
    i.add_argument("--python", help="the host python holding torch (default: this one)")
    i.add_argument("--venv", default=".venv-offline", help="default .venv-offline")
    i.set_defaults(run=install)
    h = commands.add_parser("have", help="list the packages a python holds (for --have)")
    h.add_argument("--python", help="default: this one")
    h.set_defaults(run=have)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
