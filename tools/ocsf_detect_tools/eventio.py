"""Reading and writing event files: JSON Lines, optionally gzip-compressed, or stdin."""

from __future__ import annotations

import gzip
import os
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

import orjson

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
EXPECTED = "expected JSON lines (.jsonl, .jsonl.gz or - for stdin), one OCSF event object per line"


def open_text_or_gz(path: Path, mode: str = "rb") -> IO[Any]:
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, mode)  # type: ignore[return-value]
    return path.open(mode)


class EventFileError(Exception):
    """An events file that cannot be read; the message names the file and the problem."""


def read_lines(path: Path | str) -> list[bytes]:
    """Every non-blank line of a .jsonl or .jsonl.gz file (``-``: standard input), as raw
    bytes (not decoded: the parser owns decoding, so a bad line becomes a rejected
    outcome, not a crash). Gzip is recognised by its magic bytes, whatever the name.

    Raises ``EventFileError`` with one line saying what was found and what is expected
    for a file that is missing, a directory, unreadable, a .gz that is not gzip or is cut
    short, empty, a JSON array, CSV, binary, or any text whose first line is not a JSON
    object. A single bad line further down is not an error here: it is that line's
    ``rejected`` outcome."""
    if str(path) == STDIN:
        name = "standard input"
        raw: IO[bytes] = sys.stdin.buffer
        suffix = ""
    else:
        path = Path(path)
        name = f"events file {path}"
        if path.is_dir():
            raise EventFileError(f"{name} is a directory; {EXPECTED}")
        if not path.exists():  # a named pipe or <(...) is not a file, and is read all the same
            raise EventFileError(f"{name} does not exist")
        try:
            raw = path.open("rb")
        except OSError as exc:
            raise EventFileError(f"cannot read {name}: {exc.strerror or exc}") from exc
        suffix = path.suffix
    # Streamed: a baseline of millions of events is held once, as its lines, never also
    # as the whole file and the whole decompressed file.
    with raw if raw is not sys.stdin.buffer else nullcontext(raw):
        try:
            magic = _peek(raw, 2)
            stream: IO[bytes] | gzip.GzipFile = raw
            if suffix == ".gz" or magic == GZIP_MAGIC:
                stream = gzip.GzipFile(fileobj=raw, mode="rb")
            head = stream.read(_HEAD_BYTES)
            problem = describe_non_jsonl(head)
            if problem:
                raise EventFileError(f"{name} {problem}; {EXPECTED}")
            head = head.removeprefix(UTF8_BOM)  # an editor's mark, not part of the first event
            head += stream.readline()  # the head ends at a line's end
            lines = [line for line in head.split(b"\n") if line.strip()]
            lines.extend(line.rstrip(b"\n") for line in stream if line.strip())
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise EventFileError(f"{name} is not a complete gzip file: {exc}") from exc
        except OSError as exc:
            raise EventFileError(f"cannot read {name}: {exc.strerror or exc}") from exc
    return lines


_HEAD_BYTES = 65536  # what describe_non_jsonl looks at


def _peek(raw: IO[bytes], n: int) -> bytes:
    """The first ``n`` bytes of ``raw`` without consuming them (a pipe cannot seek)."""
    peek = getattr(raw, "peek", None)
    if peek is not None:
        return bytes(peek(n)[:n])
    start = raw.read(n)
    raw.seek(-len(start), os.SEEK_CUR)
    return start


def describe_non_jsonl(data: bytes) -> str | None:
    """What ``data`` is when it is plainly not JSON lines (``None`` when its first line
    could be an event object). Looks at the head only: cheap on a large file.

    >>> describe_non_jsonl(b'[{"class_uid": 4001}]')
    'holds a JSON array, not JSON lines (convert it with: jq -c ".[]")'
    """
    head = data[:65536]
    text = head.removeprefix(UTF8_BOM).lstrip(b" \t\r\n")
    if not text:
        return "is empty" if not data else "holds only blank lines"
    if b"\x00" in head or _mostly_binary(head):
        return f"holds binary data (starts with bytes {text[:8].hex(' ')})"
    if text[:1] == b"{":
        return None
    first = text.split(b"\n", 1)[0].rstrip(b"\r")
    shown = first[:60].decode("utf-8", "replace")
    if text[:1] == b"[":
        return 'holds a JSON array, not JSON lines (convert it with: jq -c ".[]")'
    if b"," in first or b"\t" in first or b";" in first:
        return f"looks like CSV or another delimited table (first line: {shown!r})"
    return f"does not start with a JSON object (first line: {shown!r})"


def _mostly_binary(head: bytes) -> bool:
    """More than a tenth of the head is control bytes or invalid UTF-8."""
    sample = head[:4096]
    text = sample.decode("utf-8", "replace")
    bad = text.count("\ufffd") + sum(1 for c in text if ord(c) < 32 and c not in "\t\r\n\f")
    return bad > len(text) / 10


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block
    completes, removed if it raises (Ctrl-C included): a reader of ``path`` sees the old
    file, or none, or the complete new one, never a partial one.

    >>> with atomic_path(Path("out.jsonl")) as tmp:  # doctest: +SKIP
    ...     tmp.write_text("...")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """``open_text_or_gz`` on a temporary name, renamed over ``path`` when complete (gzip
    when ``path`` ends in .gz)."""
    with atomic_path(path) as tmp, _open_as(tmp, Path(path).suffix == ".gz", mode) as fh:
        yield fh


def _open_as(path: Path, gz: bool, mode: str) -> IO[Any]:
    return gzip.open(path, mode) if gz else path.open(mode)  # type: ignore[return-value]


def write_jsonl(records: Iterable[Any], path: Path) -> int:
    """Write ``records`` as JSON lines (gzip for .gz), atomically; the number written."""
    n = 0
    with atomic_open(Path(path), "wb") as fh:
        for record in records:
            fh.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            n += 1
    return n


def event_uid(event: dict[str, Any]) -> str | None:
    meta = event.get("metadata")
    uid = meta.get("uid") if isinstance(meta, dict) else None
    return str(uid) if uid is not None else None
