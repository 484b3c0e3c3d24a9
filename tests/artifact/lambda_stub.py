"""A loopback stand-in for the two AWS APIs the release hook calls: Lambda ``Invoke`` and
CodeDeploy ``PutLifecycleEventHookExecutionStatus``.

moto's Lambda would run the target in a container of its own, not the packaged artifact.
Here an ``Invoke`` of a function's version is answered by ``invoke_target`` (the artifact
tier starts the target's own packaged process, laid out as Lambda does); the hook reaches
this server through botocore's per-service endpoint variables, with its real adapters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

CODEDEPLOY_TARGET = "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus"


class FunctionError(Exception):
    """The target's handler raised; ``payload`` is the runtime's error document."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.payload = payload


class LambdaStub:
    """``invocations`` and ``reports`` record what the hook asked for."""

    def __init__(self, invoke_target: Callable[[str, Any], Any]) -> None:
        self.invoke_target = invoke_target
        self.invocations: list[tuple[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.url = ""

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if headers.get("X-Amz-Target") == CODEDEPLOY_TARGET:
            request = json.loads(body)
            self.reports.append(request)
            reply = {"lifecycleEventHookExecutionId": request["lifecycleEventHookExecutionId"]}
            return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(reply).encode()
        prefix, suffix = "/2015-03-31/functions/", "/invocations"
        if path.startswith(prefix) and path.split("?", maxsplit=1)[0].endswith(suffix):
            function = unquote(path[len(prefix) :].split("?", maxsplit=1)[0][: -len(suffix)])
            payload = json.loads(body or b"null")
            self.invocations.append((function, payload))
            headers_out = {"Content-Type": "application/json", "X-Amz-Executed-Version": "1"}
            try:
                result = self.invoke_target(function, payload)
            except FunctionError as exc:
                headers_out["X-Amz-Function-Error"] = "Unhandled"
                return 200, headers_out, json.dumps(exc.payload).encode()
            return 200, headers_out, json.dumps(result).encode()
        return 404, {"Content-Type": "application/json"}, b'{"message": "not stubbed"}'


@contextmanager
def serve(stub: LambdaStub) -> Iterator[LambdaStub]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, payload = stub.answer(self.path, self.headers, body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
