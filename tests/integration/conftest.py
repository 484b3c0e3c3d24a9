"""Integration fixtures: an embedded moto server on 127.0.0.1 reached over HTTP."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def emulator_url():
    """A moto ThreadedMotoServer on a free loopback port, with boto3 pointed at it."""
    from ocsf_detect_tools.emulator import Emulator, aws_environment

    with Emulator() as emu, aws_environment(emu.endpoint_url):
        assert os.environ["AWS_ENDPOINT_URL"] == emu.endpoint_url
        yield emu.endpoint_url


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Lambda's /tmp of one execution environment, empty at the start."""
    root = tmp_path / "lambda-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def stalled_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An endpoint on loopback that accepts every connection and never answers; boto3 is
    pointed at it (every service)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield url
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()
