"""Run the packaged functions as Lambda runs them: from the assets ``cdk synth`` produced.

The artifact tier (``tests/artifact``) and the cold-start benchmark
(``benchmarks/cold_start.py``) share this module:

* ``synth_stage`` synthesizes one stage with the pinned CDK CLI, as ``make synth`` does;
* ``read_assembly`` finds each ``AWS::Lambda::Function`` in the synthesized template, its
  code asset (``aws:asset:path``), its handler, its variables and its layers in template
  order (an asset directory each, or the model layer, which comes from the registry);
* ``lay_out`` builds what the execution environment sees: the code asset as the task root,
  the layers merged into one ``opt`` directory in template order (a later layer overwrites
  an earlier one's files, as Lambda extracts them), the bundle archive unpacked into it;
* ``runtime_sdk`` is the runtime's own directory: boto3/botocore at the version the
  python3.12 runtime ships and its SnapStart hooks library, installed for the Lambda
  platform into ``.build/``;
* ``invoke`` starts ``python3.12 -I -S -B`` on ``lambda_bootstrap.py`` with Lambda's
  ``sys.path`` and environment, and returns what the handler answered, the init time and
  where every imported module came from.

Example::

    functions = read_assembly(synth_stage(out, "dev", model_version=version))
    stream = functions.by_handler(names.STREAM_HANDLER)
    layout = lay_out(stream, work_dir, bundle_archive=archive)
    run = invoke(layout, stream.environment(layout, refs), [{"ocsf_detect_selftest": True}])
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
LAMBDA_PYTHON = "3.12"
RUNTIME_SDK_VERSION = "1.38.36"
"""boto3 and botocore as the Lambda python3.12 runtime ships them (the runtime updates them
from time to time; a handler must not depend on a newer one)."""
SNAPSHOT_RESTORE_VERSION = "1.0.0"
"""``snapshot_restore_py``, SnapStart's runtime hooks, which the Python runtimes include."""
RUNTIME_SDK_DIR = (
    REPO_ROOT / ".build" / f"lambda-runtime-boto3-{RUNTIME_SDK_VERSION}-{SNAPSHOT_RESTORE_VERSION}"
)
REGION = "us-east-1"
ACCOUNT = "123456789012"
MODEL_LAYER = "model"
"""Stands for the model layer in ``SynthesizedFunction.layers``: it is not an asset."""
ZIP_EPOCH = 315532800.0
"""1980-01-01, the time CDK stamps on every entry of an asset zip: files in a deployed
layer all carry it, so a timestamp-checked .pyc would not match its source."""
_CDK_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "CDK_DISABLE_VERSION_CHECK": "1",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}
_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
_DONE = ".complete"


class ArtifactError(RuntimeError):
    """The artifacts cannot be synthesized, laid out or started; the message says why."""


# --- python3.12 and the runtime's SDK ------------------------------------------------------
def find_python312() -> Path | None:
    """A python3.12 that runs: ``python3.12`` on PATH, then pyenv's installed 3.12.x."""
    candidates: list[Path] = []
    if found := shutil.which(f"python{LAMBDA_PYTHON}"):
        candidates.append(Path(found))
    roots = [Path(os.environ["PYENV_ROOT"])] if os.environ.get("PYENV_ROOT") else []
    roots.append(Path.home() / ".pyenv")
    for root in roots:
        candidates += sorted((root / "versions").glob(f"{LAMBDA_PYTHON}*/bin/python3.12"))
    for candidate in candidates:
        # pyenv's shim exists even when no 3.12 is selected; it then fails to run.
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == LAMBDA_PYTHON:
            return candidate
    return None


def require_python312() -> Path:
    found = find_python312()
    if found is None:
        raise ArtifactError(
            "no runnable python3.12 (Lambda's runtime) on PATH or under ~/.pyenv/versions: "
            "install it (e.g. `pyenv install 3.12`) to run the packaged functions"
        )
    return found


def runtime_sdk(target: Path = RUNTIME_SDK_DIR) -> Path:
    """The runtime directory: boto3/botocore ``RUNTIME_SDK_VERSION`` for the Lambda platform."""
    if (target / _DONE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", LAMBDA_PYTHON,
            *(arg for platform in _PLATFORMS for arg in ("--platform", platform)),
            "--target", str(staging),
            f"boto3=={RUNTIME_SDK_VERSION}", f"botocore=={RUNTIME_SDK_VERSION}",
            f"snapshot-restore-py=={SNAPSHOT_RESTORE_VERSION}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ArtifactError(f"cannot install the runtime's boto3: {done.stderr[-2000:]}")
        shutil.rmtree(staging / "bin", ignore_errors=True)
        (staging / _DONE).write_text(RUNTIME_SDK_VERSION + "\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / _DONE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# --- synth and the cloud assembly -----------------------------------------------------------
def synth_stage(
    out: Path,
    stage: str = "dev",
    *,
    model_version: str,
    model_object_version: str = "artifact",
    context: Mapping[str, str] | None = None,
) -> Path:
    """``cdk synth`` of one stage into ``out`` with the pinned CLI, as ``make synth`` runs it."""
    # npm writes this on every install: missing, or older than the lockfile (a CLI pin
    # changed since), the pinned CLI is installed again
    node_stamp = REPO_ROOT / "node_modules" / ".package-lock.json"
    lockfile = REPO_ROOT / "package-lock.json"
    if not node_stamp.is_file() or node_stamp.stat().st_mtime < lockfile.stat().st_mtime:
        _run(["npm", "ci", "--no-audit", "--no-fund"], "npm ci (the pinned CDK CLI)")
    command = [
        "npx", "--no-install", "cdk", "synth",
        "--app", f"{sys.executable} -m infra.app",
        "-o", str(out), "--quiet", "--no-notices", "--no-version-reporting",
        "-c", f"stage={stage}", "-c", f"modelVersion={model_version}",
        "-c", f"modelObjectVersion={model_object_version}",
        *(arg for key, value in (context or {}).items() for arg in ("-c", f"{key}={value}")),
    ]  # fmt: skip
    _run(command, f"cdk synth -c stage={stage}")
    return out


def _run(command: Sequence[str], what: str) -> None:
    env = {**os.environ, **_CDK_ENV}
    done = subprocess.run(
        list(command), cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ArtifactError(f"{what} failed:\n{(done.stderr or done.stdout)[-4000:]}")


@dataclass(frozen=True)
class SynthesizedFunction:
    """One ``AWS::Lambda::Function`` of the template and where its pieces are on disk."""

    logical_id: str
    handler: str
    runtime: str
    code: Path
    layers: tuple[Path | str, ...]
    """Asset directories in template order; ``MODEL_LAYER`` for the bundle's layer."""
    variables: Mapping[str, Any]
    memory_mb: int
    timeout_s: int

    def environment(
        self,
        layout: Layout,
        refs: Mapping[str, Any],
        *,
        endpoint_url: str,
        runtime_dir: Path,
    ) -> dict[str, str]:
        """Lambda's variables for this function plus its own, resolved against ``refs``.

        ``refs`` maps a logical id to its ``Ref`` value or to ``{"Ref": ..., "<Attr>": ...}``;
        a path under ``/opt`` becomes the same path under the layout's opt directory.
        """
        name = f"artifact-{self.logical_id}"[:64]
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(layout.task_root),
            "LAMBDA_RUNTIME_DIR": str(runtime_dir),
            "_HANDLER": self.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{self.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_ENDPOINT_URL": endpoint_url,
        }
        for key, value in self.variables.items():
            text = str(resolve(value, refs))
            if text == "/opt" or text.startswith("/opt/"):
                text = str(layout.opt) + text[len("/opt") :]
            env[key] = text
        return env


@dataclass(frozen=True)
class Assembly:
    """The synthesized template and its functions."""

    directory: Path
    template: Mapping[str, Any]
    functions: tuple[SynthesizedFunction, ...]

    def by_handler(self, handler: str) -> list[SynthesizedFunction]:
        return [f for f in self.functions if f.handler == handler]

    def resource(self, logical_id: str) -> Mapping[str, Any]:
        resource: Mapping[str, Any] = self.template["Resources"][logical_id]
        return resource


def read_assembly(directory: Path) -> Assembly:
    """The one stack template in a cloud assembly directory, with its functions located."""
    templates = sorted(Path(directory).glob("*.template.json"))
    if len(templates) != 1:
        raise ArtifactError(f"expected one stack template in {directory}, found {templates}")
    template = json.loads(templates[0].read_text())
    resources: Mapping[str, Any] = template["Resources"]

    def asset(logical_id: str) -> Path:
        path = resources[logical_id].get("Metadata", {}).get("aws:asset:path")
        if not path:
            raise ArtifactError(f"{logical_id} has no aws:asset:path metadata")
        return Path(directory) / path

    functions = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        if "Handler" not in props or not str(props.get("Runtime", "")).startswith("python"):
            continue  # CDK's own helper functions (custom resources), if any
        layers: list[Path | str] = []
        for ref in props.get("Layers", []):
            layer_id = ref["Ref"]
            meta = resources[layer_id].get("Metadata", {})
            layers.append(asset(layer_id) if "aws:asset:path" in meta else MODEL_LAYER)
        functions.append(
            SynthesizedFunction(
                logical_id=logical_id,
                handler=props["Handler"],
                runtime=props["Runtime"],
                code=asset(logical_id),
                layers=tuple(layers),
                variables=props.get("Environment", {}).get("Variables", {}),
                memory_mb=int(props.get("MemorySize", 128)),
                timeout_s=int(props.get("Timeout", 3)),
            )
        )
    return Assembly(Path(directory), template, tuple(functions))


def resolve(value: Any, refs: Mapping[str, Any]) -> Any:
    """A CloudFormation value with its intrinsics (Ref, Fn::GetAtt, Fn::Join, Fn::Select,
    Fn::Split, Fn::Sub without a variable map) replaced by what ``refs`` says."""
    pseudo = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": "artifact",
    }
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    if not isinstance(value, Mapping):
        return value
    if len(value) != 1:
        return {k: resolve(v, refs) for k, v in value.items()}
    ((key, arg),) = value.items()
    if key == "Ref":
        if arg in pseudo:
            return pseudo[arg]
        return _attribute(refs, arg, "Ref")
    if key == "Fn::GetAtt":
        logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        return _attribute(refs, logical_id, attribute)
    if key == "Fn::Join":
        separator, parts = arg
        return separator.join(str(resolve(p, refs)) for p in parts)
    if key == "Fn::Select":
        index, items = arg
        return resolve(items, refs)[int(index)]
    if key == "Fn::Split":
        separator, text = arg
        return str(resolve(text, refs)).split(separator)
    if key == "Fn::Sub" and isinstance(arg, str):
        import re

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return str(_attribute(refs, logical_id, attribute))
            return str(pseudo[name] if name in pseudo else _attribute(refs, name, "Ref"))

        return re.sub(r"\$\{([^}!]+)\}", substitute, arg)
    raise ArtifactError(f"cannot resolve the intrinsic {key} in {value}")


def _attribute(refs: Mapping[str, Any], logical_id: str, attribute: str) -> Any:
    if logical_id not in refs:
        raise ArtifactError(f"no resource stands in for {logical_id} (needed for its {attribute})")
    found = refs[logical_id]
    if isinstance(found, Mapping):
        if attribute not in found:
            raise ArtifactError(f"{logical_id} has no {attribute} here")
        return found[attribute]
    if attribute != "Ref":
        raise ArtifactError(f"{logical_id} has only a Ref value here, not {attribute}")
    return found


def referenced(value: Any) -> set[str]:
    """The logical ids a CloudFormation value refers to (Ref, Fn::GetAtt, ${...})."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= referenced(item)
    elif isinstance(value, Mapping):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
            elif key == "Fn::Sub" and isinstance(arg, str):
                import re

                found |= {
                    m.split(".", 1)[0]
                    for m in re.findall(r"\$\{([^}!]+)\}", arg)
                    if not m.startswith("AWS::")
                }
            else:
                found |= referenced(arg)
    return found


def placeholder_refs(assembly: Assembly) -> dict[str, Any]:
    """Well-formed stand-ins (names, ARNs, URLs) for what the functions' variables refer to,
    for runs that call no AWS service (init and the self-test: the cold-start benchmark)."""
    refs: dict[str, Any] = {}
    wanted = set().union(*(referenced(dict(f.variables)) for f in assembly.functions))
    for logical_id in sorted(wanted):
        resource = assembly.resource(logical_id)
        kind, name = resource["Type"], logical_id[:60]
        if kind == "AWS::SNS::Topic":
            refs[logical_id] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
        elif kind == "AWS::SQS::Queue":
            refs[logical_id] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        elif kind == "AWS::Lambda::Version":
            target = resource["Properties"]["FunctionName"]["Ref"]
            refs[logical_id] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{target[:60]}:1"
        else:  # buckets, buses, streams: a Ref is their name
            refs[logical_id] = name.lower()
    return refs


# --- the execution environment ----------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """A function's file system as Lambda mounts it: ``/var/task`` and ``/opt``."""

    root: Path
    task_root: Path
    opt: Path

    def size_bytes(self) -> dict[str, int]:
        return {"task": _tree_size(self.task_root), "opt": _tree_size(self.opt)}


def lay_out(
    function: SynthesizedFunction,
    root: Path,
    *,
    bundle_archive: Path | None,
    bytecode: bool = True,
) -> Layout:
    """Build ``root/task`` (the code asset) and ``root/opt`` (the layers, in template order).

    ``bundle_archive`` is the model layer's content (a zip with ``bundle/`` inside); a
    function with a model layer and no archive is an error. With ``bytecode=False`` any
    ``__pycache__`` shipped in the assets is left out. Files are hard links when possible;
    every file gets the asset zip's fixed timestamp, as in a deployed layer.
    """
    root = Path(root)
    if root.exists():
        _make_writable(root)
        shutil.rmtree(root)
    task, opt = root / "task", root / "opt"
    task.mkdir(parents=True)
    opt.mkdir()
    _merge(function.code, task, bytecode=bytecode)
    for layer in function.layers:
        if layer == MODEL_LAYER:
            if bundle_archive is None:
                raise ArtifactError(f"{function.logical_id} has a model layer: pass its archive")
            with zipfile.ZipFile(bundle_archive) as archive:
                archive.extractall(opt)
        else:
            _merge(Path(layer), opt, bytecode=bytecode)
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, (ZIP_EPOCH, ZIP_EPOCH))
    return Layout(root=root, task_root=task, opt=opt)


def precompile(layout: Layout, python312: Path) -> None:
    """Compile every module of the layout with python3.12 (unchecked-hash .pyc, which stay
    valid whatever the files' timestamps), as a build that ships bytecode would."""
    for directory in (layout.task_root, layout.opt):
        command = [str(python312), "-I", "-m", "compileall", "-q", "-j", "0"]
        command += ["--invalidation-mode", "unchecked-hash", str(directory)]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ArtifactError(f"compileall failed in {directory}: {done.stdout[-2000:]}")


def _merge(source: Path, dest: Path, *, bytecode: bool) -> None:
    if not source.is_dir():
        raise ArtifactError(f"asset directory {source} is missing")
    for dirpath, dirnames, filenames in os.walk(source):
        if not bytecode:
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        here = dest / Path(dirpath).relative_to(source)
        here.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if not bytecode and name.endswith(".pyc"):
                continue
            target = here / name
            if target.exists() or target.is_symlink():
                target.unlink()  # a later layer's file replaces an earlier one's
            try:
                os.link(Path(dirpath) / name, target)
            except OSError:
                shutil.copy2(Path(dirpath) / name, target)


def _make_writable(root: Path) -> None:
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o755)


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --- starting the function ------------------------------------------------------------------
@dataclass(frozen=True)
class Invocation:
    """What one process of the packaged function did."""

    returncode: int
    report: Mapping[str, Any]
    stdout: str
    stderr: str
    wall_ms: float

    @property
    def init_error(self) -> Mapping[str, Any] | None:
        return self.report.get("init_error")

    @property
    def init_ms(self) -> float:
        return float(self.report.get("init_ms", float("nan")))

    @property
    def results(self) -> list[Any]:
        """The handler's answers; an invocation that raised fails here with its error."""
        answers = []
        for outcome in self.report.get("invocations", []):
            if "error" in outcome:
                error = outcome["error"]
                raise ArtifactError(
                    f"the handler raised {error['errorType']}: {error['errorMessage']}\n"
                    + "".join(error.get("stackTrace", []))
                )
            answers.append(outcome["result"])
        return answers

    @property
    def invocation_ms(self) -> list[float]:
        return [float(o["ms"]) for o in self.report.get("invocations", [])]

    def modules_outside(self, allowed: Iterable[Path]) -> dict[str, str]:
        """Imported modules whose file lies under none of ``allowed``."""
        roots = [str(Path(p).resolve()) + os.sep for p in allowed]
        return {
            name: location
            for name, location in self.report.get("modules", {}).items()
            if not any(location.startswith(root) for root in roots)
        }


def invoke(
    layout: Layout,
    env: Mapping[str, str],
    events: Sequence[Any],
    *,
    python312: Path,
    timeout_s: float = 300,
) -> Invocation:
    """Start a fresh process of the function and invoke it once per event, in order.

    The interpreter runs isolated (``-I``: no PYTHON* variables, no user site, no script
    directory on the path), without ``site`` (``-S``: no site-packages of this machine) and
    writes no bytecode (``-B``: /opt and /var/task are read-only in Lambda).
    """
    with tempfile.TemporaryDirectory(prefix="invocation-") as scratch:
        result = Path(scratch) / "result.json"
        started = time.perf_counter()
        done = subprocess.run(
            [str(python312), "-I", "-S", "-B", str(BOOTSTRAP), str(result), str(layout.opt)],
            input=json.dumps(list(events)),
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        wall_ms = (time.perf_counter() - started) * 1000
        if not result.is_file():
            raise ArtifactError(
                f"the bootstrap died (exit {done.returncode}) before reporting:\n"
                f"{done.stderr[-4000:]}"
            )
        report = json.loads(result.read_text())
    return Invocation(done.returncode, report, done.stdout, done.stderr, wall_ms)


def stdlib_dirs(python312: Path) -> list[Path]:
    """The standard library of ``python312`` (its own site-packages excluded by ``-S``)."""
    code = "import sys, sysconfig; print(sysconfig.get_paths()['stdlib']); print(sys.prefix)"
    done = subprocess.run(
        [str(python312), "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    stdlib, _ = done.stdout.splitlines()
    return [Path(stdlib).resolve()]


@dataclass
class ColdStart:
    """Init times of one function over fresh processes."""

    function: str
    init_ms: list[float] = field(default_factory=list)
    first_invoke_ms: list[float] = field(default_factory=list)

    @staticmethod
    def median(values: Sequence[float]) -> float:
        ordered = sorted(values)
        middle = len(ordered) // 2
        if not ordered:
            return float("nan")
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def measure_cold_starts(
    layout: Layout,
    env: Mapping[str, str],
    first_event: Any,
    *,
    python312: Path,
    runs: int = 5,
    name: str = "",
    on_run: Callable[[Invocation], None] | None = None,
) -> ColdStart:
    """``runs`` fresh processes, each: init (imports) then ``first_event`` (bundle load)."""
    measured = ColdStart(name)
    for _ in range(runs):
        run = invoke(
            layout, env, [first_event] if first_event is not None else [], python312=python312
        )
        if run.init_error:
            raise ArtifactError(f"{name} failed to start: {run.init_error['errorMessage']}")
        run.results  # noqa: B018 - raises if the first invocation failed
        measured.init_ms.append(run.init_ms)
        if first_event is not None:
            measured.first_invoke_ms.append(run.invocation_ms[0])
        if on_run is not None:
            on_run(run)
    return measured
