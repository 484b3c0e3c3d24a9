"""Start one packaged function as the Lambda python3.12 runtime does, then invoke it.

Run by ``ocsf_detect_tools.artifact`` as ``python3.12 -I -S -B lambda_bootstrap.py RESULT OPT``
in an environment that holds the function's variables. Like the runtime's own bootstrap it
puts the task root, the layers' two directories under ``OPT`` and the runtime directory
(``LAMBDA_RUNTIME_DIR``, holding the runtime's boto3) before the standard library, imports
the module ``_HANDLER`` names (the *init* phase), then calls the handler once per event read
from stdin (a JSON list) with a context object, in one process, as a warm container would.

RESULT receives one JSON document: the init time, each invocation's answer (serialised
as Lambda serialises it) or error, and where every imported module came from. The
handler's own output (logs, EMF) stays on stdout/stderr. This file imports nothing of the
project: it is the runtime's side of the contract.
"""

import importlib
import json
import os
import sys
import time
import traceback
import uuid

_STARTED = time.perf_counter()


class LambdaContext:
    """The attributes and the one method of the runtime's context object."""

    def __init__(self, deadline: float) -> None:
        name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        region = os.environ["AWS_REGION"]
        self.function_name = name
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{name}")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "artifact")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _module_files() -> dict:
    files = {}
    this = os.path.realpath(__file__)
    for name, module in list(sys.modules.items()):
        location = getattr(module, "__file__", None)
        if location and os.path.realpath(location) != this:  # this file is the runtime's
            files[name] = os.path.realpath(location)
    return files


def main() -> int:
    result_path, opt = sys.argv[1], sys.argv[2]
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    runtime_dir = os.environ["LAMBDA_RUNTIME_DIR"]
    version = "{}.{}".format(*sys.version_info[:2])
    sys.path[:0] = [
        task_root,
        os.path.join(opt, "python", "lib", f"python{version}", "site-packages"),
        os.path.join(opt, "python"),
        runtime_dir,
    ]
    os.chdir(task_root)
    events = json.loads(sys.stdin.read() or "[]")
    timeout_s = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "60"))
    report: dict = {"python": sys.version, "sys_path": list(sys.path), "invocations": []}

    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    handler = None
    init_started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the runtime reports Runtime.ImportModuleError
        report["init_error"] = _error(exc, "Runtime.ImportModuleError")
    else:
        handler = getattr(module, function_name, None)
        if not callable(handler):
            report["init_error"] = {
                "errorType": "Runtime.HandlerNotFound",
                "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'",
            }
    report["init_ms"] = (time.perf_counter() - init_started) * 1000
    report["process_to_init_ms"] = (time.perf_counter() - _STARTED) * 1000

    if handler is not None and "init_error" not in report:
        for event in events:
            context = LambdaContext(time.monotonic() + timeout_s)
            started = time.perf_counter()
            try:
                answer = handler(event, context)
                # Lambda returns the handler's value as JSON; what json cannot encode fails.
                outcome = {"result": json.loads(json.dumps(answer))}
            except Exception as exc:
                outcome = {"error": _error(exc)}
            outcome["ms"] = (time.perf_counter() - started) * 1000
            report["invocations"].append(outcome)

    report["modules"] = _module_files()
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(report, out)
    return 1 if "init_error" in report else 0


if __name__ == "__main__":
    sys.exit(main())
