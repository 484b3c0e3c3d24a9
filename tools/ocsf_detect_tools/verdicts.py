"""Analysts' verdicts read back for training and evaluation (``ocsf_detect.feedback``).

A source is the feedback bucket (``s3://bucket``: every verdict under
``feedback/verdicts/``), a directory of verdict objects copied from it (``*.json``), or a
JSON Lines file of verdicts (``.jsonl`` or ``.jsonl.gz``, one verdict a line).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import orjson
from pydantic import ValidationError

from ocsf_detect.feedback import S3FeedbackStore, Verdict


class VerdictSourceError(Exception):
    """A verdict source that cannot be read; the message names it and the problem."""


def read_verdicts(source: str, *, s3: object | None = None) -> list[Verdict]:
    """Every verdict of ``source`` (see the module docstring), the latest per finding."""
    if source.startswith("s3://"):
        bucket = source.removeprefix("s3://").split("/", 1)[0]
        if not bucket:
            raise VerdictSourceError(f"{source}: give the feedback bucket as s3://BUCKET")
        if s3 is None:
            import boto3

            s3 = boto3.client("s3")
        try:
            verdicts = list(S3FeedbackStore(s3, bucket).verdicts())
        except ValidationError as exc:
            raise VerdictSourceError(f"{source}: a verdict is malformed: {exc}") from exc
        except Exception as exc:
            raise VerdictSourceError(f"{source}: cannot read the verdicts: {exc}") from exc
        return _latest(verdicts)
    path = Path(source)
    if path.is_dir():
        documents = [(str(p), p.read_bytes()) for p in sorted(path.rglob("*.json"))]
    elif path.is_file():
        try:
            raw = path.read_bytes()
            if path.name.endswith(".gz") or raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
        except OSError as exc:  # unreadable, or not (complete) gzip
            raise VerdictSourceError(f"{source}: cannot read the verdicts: {exc}") from exc
        except (EOFError, zlib.error) as exc:
            raise VerdictSourceError(f"{source}: not a complete gzip file: {exc}") from exc
        documents = [
            (f"{path}:{i}", line) for i, line in enumerate(raw.splitlines(), 1) if line.strip()
        ]
    else:
        raise VerdictSourceError(f"{source}: no such file or directory")
    verdicts = []
    for where, document in documents:
        try:
            verdicts.append(Verdict.model_validate(orjson.loads(document)))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise VerdictSourceError(f"{where}: not a verdict ({first})") from exc
    return _latest(verdicts)


def _latest(verdicts: list[Verdict]) -> list[Verdict]:
    """The latest verdict on each event (``Verdict.subject``; the events of one alert
    group share the group's finding uid, so the finding uid does not name one)."""
    by_subject: dict[str, Verdict] = {}
    for v in sorted(verdicts, key=lambda v: v.received_ms):
        by_subject[v.subject] = v
    return list(by_subject.values())


def benign_lines(verdicts: list[Verdict]) -> list[bytes]:
    """The events judged benign, as event lines for a baseline."""
    return [orjson.dumps(v.event) for v in verdicts if v.verdict == "benign"]


def verdict_labels(verdicts: list[Verdict]) -> dict[str, int]:
    """uid (the event's metadata.uid) -> 1 malicious, 0 benign, for events that have one."""
    out: dict[str, int] = {}
    for v in verdicts:
        metadata = v.event.get("metadata")
        uid = metadata.get("uid") if isinstance(metadata, dict) else None
        if isinstance(uid, str | int) and not isinstance(uid, bool):
            out[str(uid)] = 1 if v.verdict == "malicious" else 0
    return out
