"""A local stand-in for API Gateway's REST API (proxy integration, payload format v1).

It turns each HTTP request into the event API Gateway would send, calls the real Lambda
handler in-process, and turns the handler's answer back into HTTP, so ``curl`` works
against the same code that runs in AWS. Like API Gateway it refuses bodies over 10 MB
with a 413 before the function sees them. Development tool: no TLS, no auth.

>>> server = make_server(handler, port=0)          # doctest: +SKIP
>>> threading.Thread(target=server.serve_forever, daemon=True).start()  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ocsf_detect_tools.localcontext import LocalContext

API_GATEWAY_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
"""API Gateway's hard limit on a request payload (REST APIs, 10 MB)."""
STAGE = "local"
DRAIN_LIMIT_BYTES = 8 * API_GATEWAY_MAX_PAYLOAD_BYTES

LOCAL_FUNCTION_NAME = "prediction-api-local"

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def proxy_event(
    method: str,
    raw_path: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    *,
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
) -> dict[str, Any]:
    """The REST API proxy event (v1) for one HTTP request."""
    parts = urlsplit(raw_path)
    query = parse_qs(parts.query, keep_blank_values=True)
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value  # API Gateway keeps the last value of a repeated header
        multi.setdefault(name, []).append(value)
    is_base64 = False
    text: str | None = None
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, is_base64 = base64.b64encode(body).decode("ascii"), True
    request_id = request_id or str(uuid.uuid4())
    now = time.time()
    return {
        "resource": "/{proxy+}",
        "path": parts.path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": parts.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{STAGE}{parts.path}",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": single.get("User-Agent")},
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def _error(status: int, code: str, message: str, request_id: str) -> dict[str, Any]:
    body = {"error": code, "message": message, "request_id": request_id}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Request-Id": request_id},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def make_server(
    handler: LambdaHandler, host: str = "127.0.0.1", port: int = 8080
) -> ThreadingHTTPServer:
    """An HTTP server (not started) that sends every request through ``handler``.
    ``port=0`` picks a free port: read it back from ``server.server_address``."""

    class ApiGatewayHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ocsf-detect-local"

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in separate writes: without this, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every response.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _handle(self) -> None:
            request_id = str(uuid.uuid4())
            length = int(self.headers.get("Content-Length") or 0)
            if length > API_GATEWAY_MAX_PAYLOAD_BYTES:
                self._discard(length)
                self._reply(
                    _error(
                        413,
                        "payload_too_large",
                        f"request body of {length} bytes exceeds API Gateway's 10 MB limit",
                        request_id,
                    )
                )
                return
            body = self.rfile.read(length) if length else None
            event = proxy_event(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                source_ip=self.client_address[0],
                request_id=request_id,
            )
            try:
                context = LocalContext(
                    function_name=LOCAL_FUNCTION_NAME, timeout_s=29.0, aws_request_id=request_id
                )
                response = handler(event, context)
            except Exception as exc:  # what API Gateway answers when the function crashes
                self.log_error("handler crashed: %r", exc)
                response = _error(502, "internal_error", "Internal server error", request_id)
            self._reply(response)

        def _discard(self, length: int) -> None:
            """Read and drop an oversized body so the client sees the 413, not a reset;
            beyond a bound, close the connection instead of reading forever."""
            if length > DRAIN_LIMIT_BYTES:
                self.close_connection = True
                return
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    break
                length -= len(chunk)

        def _reply(self, response: dict[str, Any]) -> None:
            raw = response.get("body") or ""
            payload = (
                base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode("utf-8")
            )
            self.send_response(int(response.get("statusCode", 502)))
            sent: set[str] = set()
            for name, values in (response.get("multiValueHeaders") or {}).items():
                for value in values:
                    self.send_header(name, str(value))
                sent.add(name.lower())
            for name, value in (response.get("headers") or {}).items():
                if name.lower() not in sent and name.lower() != "content-length":
                    self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            if getattr(self.server, "quiet", False):
                return
            super().log_message(format, *args)

    server = ThreadingHTTPServer((host, port), ApiGatewayHandler)
    server.daemon_threads = True
    return server
