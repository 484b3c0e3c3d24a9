"""An embedded AWS emulator (moto's server) on 127.0.0.1, for replay, demo and tests.

``with Emulator() as emu: boto3.client("sqs", endpoint_url=emu.endpoint_url, ...)``.
The server always stops when the block exits, also on Ctrl-C.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
DEFAULT_REGION = "us-east-1"


class EmulatorError(Exception):
    """moto is not installed or its server could not start."""


class Emulator:
    """moto's ThreadedMotoServer bound to a free port on the loopback interface."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._server: Any = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise EmulatorError("the emulator is not running")
        server = getattr(self._server, "_server", None)
        if server is not None and hasattr(server, "server_port"):
            return int(server.server_port)
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Emulator:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise EmulatorError("the emulator needs moto: pip install -e '.[emulator]'") from exc
        # The server's per-request access log would drown the command's own output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self.host, port=self._port, verbose=False)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def aws_environment(endpoint_url: str, region: str = DEFAULT_REGION) -> Iterator[None]:
    """Point boto3 at ``endpoint_url`` with fake credentials; restores the environment."""
    values = {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    with environment(values):
        yield


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
