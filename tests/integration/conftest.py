"""Integration fixtures: an embedded moto server on 127.0.0.1 reached over HTTP."""

from __future__ import annotations

import os
import tempfile
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
