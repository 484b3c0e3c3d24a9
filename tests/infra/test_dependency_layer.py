"""The dependency layer: built from Lambda-platform wheels, under the size limit, importable.

Slow the first time (pip downloads about 100 MB of wheels into .build/); later runs
reuse the cache keyed by the requirements' hash.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.layers import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    PYTHON_VERSION,
    BuiltLayer,
    LayerTooLargeError,
    bytecode_compiler,
    dependency_layer,
    missing_requirements,
    shared_layer,
    tree_size,
    trim,
)

RUNTIME_IMPORTS = "import numpy, onnxruntime, hnswlib, pydantic, orjson, aws_lambda_powertools"


def find_python312() -> str | None:
    """A python3.12 that really runs: PATH first, then pyenv's installed 3.12.x versions."""
    candidates = []
    if found := shutil.which(f"python{PYTHON_VERSION}"):
        candidates.append(found)
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        versions = Path(root.stdout.strip()) / "versions"
        candidates += [
            str(p) for p in sorted(versions.glob(f"{PYTHON_VERSION}*/bin/python{PYTHON_VERSION}"))
        ]
    for candidate in candidates:
        # pyenv's shim exists even when 3.12 is not selected; it then fails to run.
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == PYTHON_VERSION:
            return candidate
    return None


@pytest.fixture(scope="module")
def built_layers() -> tuple[BuiltLayer, BuiltLayer]:
    return dependency_layer("x86_64"), shared_layer()


@pytest.mark.slow
def test_layer_fits_lambda_limit(built_layers: tuple[BuiltLayer, BuiltLayer]) -> None:
    deps, shared = built_layers
    print(
        f"\ndependency layer: {deps.size_mb:.1f} MB unzipped; shared layer: "
        f"{shared.size_mb:.2f} MB; limit {LAMBDA_UNZIPPED_LIMIT_BYTES / 2**20:.0f} MB"
    )
    assert deps.size_bytes + shared.size_bytes < LAMBDA_UNZIPPED_LIMIT_BYTES
    python = deps.path / "python"
    # wheels for the Lambda platform, not for this machine's Python
    assert list(python.glob("numpy/_core/_multiarray_umath.cpython-312-x86_64-linux-gnu.so"))
    assert list(python.glob("hnswlib.cpython-312-x86_64-linux-gnu.so"))
    # trimmed, then compiled for 3.12 only
    assert not [p for p in python.rglob("*.pyc") if ".cpython-312" not in p.name]
    assert not list(python.rglob("*.pyi"))
    assert not (python / "bin").exists()
    assert not (python / "boto3").exists()  # the runtime provides it


@pytest.mark.slow
def test_layer_imports_under_python312(built_layers: tuple[BuiltLayer, BuiltLayer]) -> None:
    python312 = find_python312()
    if python312 is None:
        pytest.skip("no runnable python3.12 on PATH or in pyenv: cannot import-test the layer")
    deps, shared = built_layers
    layers = [str(deps.path / "python"), str(shared.path / "python")]
    # Isolated (-I: no PYTHONPATH, no user site, no script directory) and without site (-S:
    # not even the interpreter's own site-packages, which a python3.12 that is a virtualenv
    # would add): the layers are the only place a third-party module can come from.
    modules = [
        *RUNTIME_IMPORTS.removeprefix("import ").split(", "),
        "pydantic_settings",
        "ocsf_detect",
    ]
    code = (
        f"import sys; sys.path[:0] = {layers!r}; "
        f"{RUNTIME_IMPORTS}; import pydantic_settings; import ocsf_detect, ocsf_detect.names; "
        "import onnxruntime as ort; "
        "assert 'CPUExecutionProvider' in ort.get_available_providers(); "
        f"print('\\n'.join(sys.modules[m].__file__ for m in {modules!r}))"
    )
    result = subprocess.run(
        [python312, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    origins = result.stdout.split()
    assert len(origins) == len(modules)
    # every one from a layer, not from some other installation
    assert all(o.startswith((str(deps.path), str(shared.path))) for o in origins), origins


@pytest.mark.slow
def test_second_build_is_a_cache_hit(built_layers: tuple[BuiltLayer, BuiltLayer]) -> None:
    deps, _ = built_layers
    again = dependency_layer("x86_64")
    assert again.path == deps.path
    assert again.key == deps.key


def test_trim_keeps_metadata_and_drops_what_lambda_never_imports(tmp_path: Path) -> None:
    site = tmp_path / "python"
    for rel in (
        "pkg/__init__.py",
        "pkg/mod.pyi",
        "pkg/tests/test_x.py",
        "pkg/__pycache__/mod.cpython-312.pyc",
        "pkg/include/header.h",
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/licenses/LICENSE.h",
        "bin/console-script",
    ):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x")
    trim(site)
    left = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert left == [
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/licenses/LICENSE.h",
        "pkg/__init__.py",
    ]
    assert tree_size(site) == 3


def test_oversized_layer_fails_with_a_clear_message(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    with pytest.raises(LayerTooLargeError, match="over Lambda's"):
        dependency_layer(requirements=requirements, build_root=tmp_path / "build", limit_bytes=-1)


def test_shared_layer_is_the_library_under_python(tmp_path: Path) -> None:
    layer = shared_layer(build_root=tmp_path)
    assert (layer.path / "python" / "ocsf_detect" / "__init__.py").is_file()
    assert (layer.path / "python" / "ocsf_detect" / "names.py").is_file()
    assert shared_layer(build_root=tmp_path).path == layer.path  # cached by content


def test_layers_ship_unchecked_hash_bytecode_for_python312(tmp_path: Path) -> None:
    if bytecode_compiler() is None:
        pytest.skip("no python3.12 to compile with: the layers ship sources only")
    layer = shared_layer(build_root=tmp_path)
    package = layer.path / "python" / "ocsf_detect"
    sources = sorted(package.rglob("*.py"))
    compiled = sorted(package.rglob("__pycache__/*.cpython-312.pyc"))
    assert len(compiled) == len(sources)
    for pyc in compiled:
        header = pyc.read_bytes()[:16]
        # PEP 552 flags: bit 0 hash-based, bit 1 check_source; unchecked = 0b01
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc
        assert b"/opt/python/ocsf_detect/" in pyc.read_bytes()


def _dist(site: Path, name: str, *requires: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = [f"Name: {name}", "Version: 1.0", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_a_requirement_nobody_provides_is_named(tmp_path: Path) -> None:
    site = tmp_path / "python"
    # Given a tracer that needs wrapt and botocore, and a package with extras and markers
    _dist(site, "aws-xray-sdk", "wrapt", "botocore>=1.11.3")
    _dist(site, "pkg", "numpy", 'tomli; python_version < "3.11"', 'rich; extra == "cli"')
    _dist(site, "numpy")
    # When the closure is checked
    missing = missing_requirements(site)
    # Then only wrapt is missing: botocore is the runtime's, the rest do not apply to 3.12
    assert missing == ["aws-xray-sdk requires wrapt"]
    _dist(site, "wrapt")
    assert missing_requirements(site) == []


@pytest.mark.slow
def test_the_pinned_layer_is_closed(built_layers: tuple[BuiltLayer, BuiltLayer]) -> None:
    deps, _ = built_layers
    python = deps.path / "python"
    assert missing_requirements(python) == []
    assert (python / "aws_xray_sdk").is_dir()  # Powertools' Tracer imports it
    assert not (python / "botocore").exists()  # the runtime's, never shadowed


def test_the_development_environment_runs_the_layers_versions() -> None:
    """`make install` takes the layer's pins as constraints, so what the tests and the
    evaluation score with is what the deployed functions run (boto3 aside: the runtime's)."""
    from importlib.metadata import PackageNotFoundError, version

    from infra.layers import REQUIREMENTS

    pins = [
        line.split("#", 1)[0].strip().split("==")
        for line in REQUIREMENTS.read_text().splitlines()
        if "==" in line.split("#", 1)[0]
    ]
    assert len(pins) > 10
    differing = {}
    for name, pinned in pins:
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # a layer-only package (the X-Ray SDK's closure, say)
        if installed != pinned:
            differing[name] = (installed, pinned)
    assert not differing, f"installed, pinned: {differing}; run make install"
