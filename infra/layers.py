"""Build the Lambda layers' directories locally, without Docker.

* The dependency layer: pinned wheels from ``layers/dependencies/requirements.txt``,
  installed by pip *for the Lambda platform* (``--platform manylinux... --only-binary``,
  CPython 3.12, x86_64 or arm64) exactly as pinned (``--no-deps``: pip would otherwise add
  botocore for the X-Ray SDK, shadowing the runtime's own), checked for a closed set of
  requirements (``missing_requirements``), trimmed, size-checked against Lambda's 250 MB
  unzipped limit, and cached under ``.build/layers/`` keyed by the requirements' hash, the
  architecture and this recipe's version, so only the first synth downloads anything.
* The shared-library layer: a copy of ``layers/shared/ocsf_detect`` under ``python/``,
  keyed by the hash of its files.

Both come out as ``<dir>/python/...``, the layout Lambda mounts at ``/opt/python``; the CDK
app hands ``<dir>`` to ``Code.from_asset``. ``python -m infra.layers`` builds them by hand.

Both ship precompiled python3.12 bytecode: /opt is read-only in Lambda, so without it
every cold start compiles each imported module again (``benchmarks/cold_start.py``
measures both). The .pyc files are *unchecked-hash* ones, valid whatever the files'
timestamps (a deployed layer's files all carry the asset zip's fixed date), and name
their sources as ``/opt/python/...`` in tracebacks. Compiling needs a python3.12 (this
interpreter, PATH or pyenv); without one the layers are built from sources only, with a
warning, under another cache key.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO_ROOT / "layers" / "dependencies" / "requirements.txt"
SHARED_SOURCE = REPO_ROOT / "layers" / "shared" / "ocsf_detect"
BUILD_ROOT = REPO_ROOT / ".build" / "layers"

PYTHON_VERSION = "3.12"
LAMBDA_PYTHON_DIR = "/opt/python"
"""Where Lambda mounts a layer's ``python/`` directory."""
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
"""A function's code plus all its layers, unzipped (Lambda quota, not adjustable)."""

# Bump when the install flags or trimming rules change: it is part of the cache key.
_RECIPE = "4"
_PLATFORMS = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"),
}
BUILD_MARKER = ".complete"
"""Written last into a layer directory: its presence means the build finished."""
_KEEP_BUILDS = 3
_TRIM_DIRS = frozenset({"__pycache__", "tests"})
_TRIM_SUFFIXES = frozenset({".pyc", ".pyo", ".pyi", ".pxd", ".pyx", ".c", ".cpp", ".h", ".hpp"})
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")


RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
"""Distributions the Lambda Python runtime itself ships (on ``sys.path`` after ``/opt``)."""
_MARKER_ENV = {
    "python_version": PYTHON_VERSION,
    "python_full_version": f"{PYTHON_VERSION}.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "os_name": "posix",
    "platform_system": "Linux",
}
_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}


class LayerBuildError(RuntimeError):
    """A layer directory could not be built."""


class LayerTooLargeError(LayerBuildError):
    """The layer does not fit Lambda's unzipped size limit."""


@dataclass(frozen=True)
class BuiltLayer:
    """A layer directory (holding ``python/``), its unzipped size and its cache key."""

    path: Path
    size_bytes: int
    key: str

    @property
    def size_mb(self) -> float:
        return self.size_bytes / (1024 * 1024)


def dependency_layer(
    architecture: str = "x86_64",
    *,
    requirements: Path = REQUIREMENTS,
    build_root: Path = BUILD_ROOT,
    limit_bytes: int = LAMBDA_UNZIPPED_LIMIT_BYTES,
) -> BuiltLayer:
    """The dependency layer for ``architecture``, built once and then read from the cache."""
    if architecture not in _PLATFORMS:
        raise LayerBuildError(
            f"unknown architecture {architecture!r}; use one of {list(_PLATFORMS)}"
        )
    requirements = Path(requirements)
    if not requirements.is_file():
        raise LayerBuildError(f"{requirements} is missing: the dependency layer has no pins")
    digest = hashlib.sha256()
    compiler = bytecode_compiler()
    digest.update(f"{_RECIPE}|{PYTHON_VERSION}|{architecture}|{bool(compiler)}|".encode())
    digest.update(requirements.read_bytes())
    key = digest.hexdigest()[:16]
    target = Path(build_root) / f"deps-{architecture}-{key}"
    if (target / BUILD_MARKER).is_file():
        return BuiltLayer(target, tree_size(target / "python"), key)

    def install(python_dir: Path) -> None:
        command = [
            sys.executable, "-m", "pip", "install",
            "--quiet", "--no-compile", "--no-deps", "--disable-pip-version-check",
            *(arg for platform in _PLATFORMS[architecture] for arg in ("--platform", platform)),
            "--implementation", "cp",
            "--python-version", PYTHON_VERSION,
            "--only-binary=:all:",
            "--target", str(python_dir),
            "-r", str(requirements),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LayerBuildError(
                f"pip could not install the dependency layer for {architecture} "
                f"(cp{PYTHON_VERSION.replace('.', '')}):\n{result.stderr.strip()[-4000:]}"
            )
        missing = missing_requirements(python_dir, architecture)
        if missing:
            raise LayerBuildError(
                f"the dependency layer is not closed: {'; '.join(missing)}. Pin each in "
                f"{requirements.name} (or add it to RUNTIME_PROVIDED if the runtime ships it)"
            )
        trim(python_dir)
        if compiler is not None:
            precompile(python_dir, compiler)
        size = tree_size(python_dir)
        if size > limit_bytes:
            raise LayerTooLargeError(
                f"the dependency layer is {size / 2**20:.1f} MB unzipped, over Lambda's "
                f"{limit_bytes / 2**20:.0f} MB limit for a function and all its layers; "
                f"drop or trim packages in {requirements.name}"
            )

    return _build_cached(target, key, install)


def shared_layer(*, source: Path = SHARED_SOURCE, build_root: Path = BUILD_ROOT) -> BuiltLayer:
    """The ``ocsf_detect`` library as a layer, rebuilt whenever one of its files changes."""
    source = Path(source)
    if not (source / "__init__.py").is_file():
        raise LayerBuildError(f"{source} is not the ocsf_detect package")
    compiler = bytecode_compiler()
    digest = hashlib.sha256(f"{_RECIPE}|{bool(compiler)}|".encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file() and _is_source(p, source)):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    key = digest.hexdigest()[:16]
    target = Path(build_root) / f"shared-{key}"
    if (target / BUILD_MARKER).is_file():
        return BuiltLayer(target, tree_size(target / "python"), key)

    def copy(python_dir: Path) -> None:
        shutil.copytree(source, python_dir / source.name, ignore=_COPY_IGNORE)
        if compiler is not None:
            precompile(python_dir, compiler)

    return _build_cached(target, key, copy)


def trim(site: Path) -> None:
    """Delete what a Lambda never imports: tests, caches, stubs, C sources, console scripts.

    Package metadata (``*.dist-info``, with the licences) is kept as it is.
    """
    shutil.rmtree(site / "bin", ignore_errors=True)
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if any(part.endswith(".dist-info") for part in path.relative_to(site).parts):
            continue
        if path.is_dir() and not path.is_symlink() and path.name in _TRIM_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in _TRIM_SUFFIXES:
            path.unlink()


def missing_requirements(site: Path, architecture: str = "x86_64") -> list[str]:
    """What the distributions installed in ``site`` require and nobody provides.

    A requirement is met by a distribution installed in ``site`` or by one the Lambda
    runtime ships (``RUNTIME_PROVIDED``); markers are evaluated for CPython 3.12 on Linux
    and ``architecture``, extras are not requested. Versions are not compared: the pins are
    pip's to honour. Returns one ``"<dist> requires <name>"`` line per gap, sorted.
    """
    from email.parser import HeaderParser

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    env = {**_MARKER_ENV, "platform_machine": _MACHINES.get(architecture, architecture)}
    metadata = {
        info: HeaderParser().parsestr((info / "METADATA").read_text(errors="replace"))
        for info in Path(site).glob("*.dist-info")
        if (info / "METADATA").is_file()
    }
    present = {canonicalize_name(str(m["Name"])) for m in metadata.values() if m["Name"]}
    provided = present | {canonicalize_name(n) for n in RUNTIME_PROVIDED}
    gaps = set()
    for meta in metadata.values():
        for line in meta.get_all("Requires-Dist") or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate(
                {**env, "extra": ""}
            ):
                continue
            if canonicalize_name(requirement.name) not in provided:
                gaps.add(f"{meta['Name']} requires {requirement.name}")
    return sorted(gaps)


def bytecode_compiler() -> Path | None:
    """A python3.12 to compile the layers with: this interpreter, PATH, or pyenv."""
    if sys.version_info[:2] == tuple(int(p) for p in PYTHON_VERSION.split(".")):
        return Path(sys.executable)
    from ocsf_detect_tools.artifact import find_python312

    found = find_python312()
    if found is None:
        print(
            f"infra.layers: no python{PYTHON_VERSION} found (PATH, pyenv): the layers ship "
            "without precompiled bytecode, and every cold start compiles their modules",
            file=sys.stderr,
        )
    return found


def precompile(site: Path, python: Path) -> None:
    """Unchecked-hash .pyc for every module under ``site``, naming ``/opt/python/...``."""
    command = [
        str(python), "-I", "-m", "compileall", "-q", "-j", "0",
        "--invalidation-mode", "unchecked-hash",
        "-s", str(site), "-p", LAMBDA_PYTHON_DIR, str(site),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # A file that does not compile under 3.12 would fail at import too: name it.
        raise LayerBuildError(f"compiling the layer failed:\n{done.stdout[-4000:]}")


def tree_size(path: Path) -> int:
    """Bytes of every regular file under ``path`` (what Lambda counts as unzipped size)."""
    return sum(
        p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink()
    )


def _is_source(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return not any(p == "__pycache__" or p.endswith(".egg-info") for p in parts) and (
        path.suffix != ".pyc"
    )


def _build_cached(target: Path, key: str, fill: Callable[[Path], None]) -> BuiltLayer:
    """Fill a fresh temporary directory, then move it into place atomically.

    Two synths racing on the same key both build; the second rename loses and its copy
    is discarded, so a reader never sees a half-built layer.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would carry into the asset
    try:
        fill(staging / "python")
        (staging / BUILD_MARKER).write_text(key + "\n")
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / BUILD_MARKER).is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(target)
    return BuiltLayer(target, tree_size(target / "python"), key)


def _prune(current: Path) -> None:
    """Keep the few most recent builds of the same kind; older ones only take disk space."""
    kind = current.name.rsplit("-", 1)[0]
    builds = sorted(
        (p for p in current.parent.glob(f"{kind}-*") if p.is_dir() and p != current),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in builds[_KEEP_BUILDS - 1 :]:
        shutil.rmtree(stale, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.layers", description="Build (or reuse) the Lambda layer directories."
    )
    parser.add_argument(
        "--arch",
        action="append",
        choices=sorted(_PLATFORMS),
        help="architecture of the dependency layer (repeatable; default x86_64)",
    )
    args = parser.parse_args(argv)
    try:
        for arch in args.arch or ["x86_64"]:
            deps = dependency_layer(arch)
            print(f"dependency layer ({arch}): {deps.size_mb:.1f} MB unzipped  {_rel(deps.path)}")
        shared = shared_layer()
        print(f"shared layer: {shared.size_mb:.2f} MB unzipped  {_rel(shared.path)}")
    except LayerBuildError as exc:
        print(f"layer build failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
