"""Reading and writing event files: JSON Lines, optionally gzip-compressed."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson


def open_text_or_gz(path: Path, mode: str = "rb") -> IO[Any]:
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, mode)  # type: ignore[return-value]
    return path.open(mode)


class EventFileError(Exception):
    """An events file that cannot be read; the message names the file and the problem."""


def read_lines(path: Path) -> list[bytes]:
    """Every non-blank line of a .jsonl or .jsonl.gz file, as raw bytes (not decoded: the
    parser owns decoding, so a bad line becomes a rejected outcome, not a crash).
    Raises ``EventFileError`` for a file that is missing, a directory, or not readable
    (a .gz that is not gzip or is cut short)."""
    path = Path(path)
    if path.is_dir():
        raise EventFileError(f"events file {path} is a directory; give a .jsonl or .jsonl.gz file")
    if not path.is_file():
        raise EventFileError(f"events file {path} does not exist")
    try:
        with open_text_or_gz(path) as fh:
            data = fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise EventFileError(f"events file {path} is not a complete gzip file: {exc}") from exc
    except OSError as exc:
        raise EventFileError(f"cannot read events file {path}: {exc.strerror or exc}") from exc
    return [line for line in data.split(b"\n") if line.strip()]


def write_jsonl(records: Iterable[Any], path: Path) -> int:
    n = 0
    with open_text_or_gz(Path(path), "wb") as fh:
        for record in records:
            fh.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            n += 1
    return n


def event_uid(event: dict[str, Any]) -> str | None:
    meta = event.get("metadata")
    uid = meta.get("uid") if isinstance(meta, dict) else None
    return str(uid) if uid is not None else None
