"""Bundle archives: the single file a bundle ships as.

The archive is a ZIP whose entries sit under ``bundle/``, because a Lambda layer made
from it (``Code.from_bucket``) unpacks into ``/opt``: the bundle then appears at
``/opt/bundle`` (``names.DEFAULT_BUNDLE_PATH``) without any code to unpack it. The same
file is what ``ocsf-detect publish`` uploads and what an ``s3://`` bundle location points to.
Entries are written in sorted order with fixed timestamps, so the same bundle directory
always gives byte-identical archives.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

ARCHIVE_ROOT = "bundle"
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


class ArchiveError(Exception):
    """An archive that cannot be written or unpacked safely."""


def stays_inside(name: str) -> bool:
    """Whether ``name``, relative, stays inside the directory it is relative to: no
    absolute path, no ``..``, no backslash (a Windows separator in a zip entry)."""
    path = Path(name)
    return (
        bool(path.parts)
        and not path.is_absolute()
        and ".." not in path.parts
        and ("\\" not in name)
    )


def listed_files(bundle_dir: Path) -> dict[str, str] | None:
    """The files (name -> sha256) that the bundle manifest in ``bundle_dir`` lists, read
    as plain JSON so that a manifest of any format version answers; None when there is no
    bundle manifest there (none, not JSON, or without a ``bundle_version`` and ``files``)."""
    try:
        raw = json.loads((Path(bundle_dir) / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("bundle_version"), str):
        return None
    files = raw.get("files")
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else None


def write_archive(bundle_dir: Path, out: Path) -> Path:
    """Pack the bundle in ``bundle_dir`` into ``out`` (a .zip) under ``bundle/``: its
    ``manifest.json`` and the files the manifest lists, nothing else (a published version
    cannot be changed, so a stray file beside the bundle, an editor's or a secret, must
    not ship in it)."""
    bundle_dir = Path(bundle_dir)
    manifest = bundle_dir / "manifest.json"
    if not manifest.is_file():
        raise ArchiveError(f"{bundle_dir} is not a bundle: manifest.json is missing")
    listed = listed_files(bundle_dir)
    if listed is None:
        raise ArchiveError(f"{manifest} is not a bundle manifest (no version, or no files)")
    outside = sorted(name for name in listed if not stays_inside(name))
    if outside:
        raise ArchiveError(f"{manifest} lists files outside the bundle: {outside[:5]}")
    missing = sorted(name for name in listed if not (bundle_dir / name).is_file())
    if missing:
        raise ArchiveError(f"{bundle_dir} lacks files its manifest lists: {missing[:5]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted([manifest, *(bundle_dir / name for name in listed)])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            rel = path.relative_to(bundle_dir).as_posix()
            info = zipfile.ZipInfo(f"{ARCHIVE_ROOT}/{rel}", date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return out


def extract_archive(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` and return the bundle directory inside it.

    Refuses entries outside ``bundle/`` or with ``..`` (zip-slip), so an archive from an
    untrusted bucket cannot write elsewhere on disk.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not stays_inside(name) or Path(name).parts[0] != ARCHIVE_ROOT:
                    raise ArchiveError(
                        f"{archive}: unexpected entry {name!r} outside {ARCHIVE_ROOT}/"
                    )
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{archive} is not a bundle archive (not a ZIP file)") from exc
    except (zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # A damaged member (bad deflate data, cut short) or an unsupported compression.
        raise ArchiveError(f"{archive} is damaged: {type(exc).__name__}: {exc}") from exc
    return dest / ARCHIVE_ROOT
