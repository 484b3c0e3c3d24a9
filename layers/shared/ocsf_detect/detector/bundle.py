"""Load and verify a bundle: hashes, dimensions and format version, once per process.

Everything heavy (ONNX sessions, HNSW indexes) is created here; ``Detector`` holds the
result. Errors say exactly what is wrong and which file.
"""

from __future__ import annotations

import hashlib
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from pydantic import ValidationError

from ocsf_detect.detector.archive import stays_inside
from ocsf_detect.detector.fine import FineRows, FineView, copies_of
from ocsf_detect.detector.manifest import FORMAT_VERSION, MANIFEST_NAME, ClassModel, Manifest
from ocsf_detect.detector.surprise import IsolationTrees

if TYPE_CHECKING:
    from ocsf_detect.detector.index import ExactBase  # imports hnswlib


class BundleError(Exception):
    """A bundle that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedClass:
    info: ClassModel
    session: Any  # onnxruntime.InferenceSession
    index: Any  # hnswlib.Index
    ids: list[str] | None
    vectors_path: Path | None = None
    isolation: IsolationTrees | None = None
    index_path: Path | None = None
    mass: np.ndarray | None = None
    # format 12: the indexed behaviours in the weighted feature space (IndexInfo.space_file)
    space: np.ndarray | None = None
    # format 13: the fine view's index (ClassModel.fine) and its file
    fine_index: Any = None
    fine_path: Path | None = None
    # format 15: the fine view's events in the feature space (``FineRows``), and each
    # indexed behaviour's row among them
    fine_rows: FineRows | None = None
    fine_behaviours: np.ndarray | None = None
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _exact: ExactBase | None = field(default=None, repr=False)
    _space_exact: ExactBase | None = field(default=None, repr=False)
    _fine_exact: ExactBase | None = field(default=None, repr=False)
    _fine_copies: frozenset[bytes] | None = field(default=None, repr=False)

    @property
    def vectors(self) -> np.ndarray:
        """The indexed vectors on first use (``exact`` is built from them): memory-mapped
        from the index file (format 5) or the .npy beside it (formats 3, 4); else read
        back from the index, slower."""
        if self._vectors is None:
            if self.vectors_path is not None:
                self._vectors = np.load(self.vectors_path, mmap_mode="r", allow_pickle=False)
            else:
                self._vectors = _stored_vectors(
                    self.index, self.index_path, self.info.index.n_items, self.info.model.dim
                )
        return self._vectors

    @property
    def exact(self) -> ExactBase:
        """``vectors`` as exact search reads them, built once (on the first re-check)."""
        if self._exact is None:
            from ocsf_detect.detector.index import ExactBase  # imports hnswlib

            self._exact = ExactBase.of(self.vectors)
        return self._exact

    @property
    def space_exact(self) -> ExactBase:
        """``space`` as exact search reads it, built once (on the first re-check)."""
        if self.space is None:
            raise ValueError(f"class {self.info.class_uid} has no feature space")
        if self._space_exact is None:
            from ocsf_detect.detector.index import ExactBase  # imports hnswlib

            self._space_exact = ExactBase.of(self.space)
        return self._space_exact

    @property
    def fine(self) -> FineView | None:
        """The fine view as the scorer serves it; None for a class without one."""
        if self.fine_index is None or self.info.fine is None:
            return None
        rows, held = self.fine_rows, self.fine_behaviours
        return FineView(
            self.fine_index,
            lambda: self.fine_exact,
            self.info.fine.tail,
            lambda: self.fine_copies,
            None if rows is None else (lambda: rows),
            self.info.fine.candidates,
            None if held is None else (lambda: held),
        )

    @property
    def fine_copies(self) -> frozenset[bytes]:
        """The fine index's vectors as bytes, built once (on the first batch)."""
        if self._fine_copies is None:
            self._fine_copies = copies_of(self._fine_vectors())
        return self._fine_copies

    def _fine_vectors(self) -> np.ndarray:
        if self.fine_index is None or self.info.fine is None:
            raise ValueError(f"class {self.info.class_uid} has no fine view")
        return _stored_vectors(
            self.fine_index, self.fine_path, self.info.fine.n_items, self.info.model.dim
        )

    @property
    def fine_exact(self) -> ExactBase:
        """The fine index's vectors as exact search reads them, built once (on the first
        re-check), memory-mapped from the index file."""
        if self._fine_exact is None:
            from ocsf_detect.detector.index import ExactBase

            self._fine_exact = ExactBase.of(self._fine_vectors())
        return self._fine_exact


def _stored_vectors(index: Any, path: Path | None, count: int, dim: int) -> np.ndarray:
    """An index's vectors: memory-mapped from its file (format 5 on), else read back from
    the index, slower."""
    from ocsf_detect.detector.index import index_file_vectors

    found = None if path is None else index_file_vectors(path, count, dim)
    if found is not None:
        return found
    n = index.get_current_count()
    return np.asarray(index.get_items(list(range(n))), np.float32)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(bundle_dir: Path) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: not a bundle ({MANIFEST_NAME} is missing)")
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if type(version) is not int or version < 1:
        raise BundleError(f"{path}: format_version is missing or not a positive integer")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {version} is newer than this library reads "
            f"({FORMAT_VERSION}); upgrade ocsf-detect to load it"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise BundleError(f"{path}: invalid manifest at {loc}: {first['msg']}") from exc


def _inside(bundle_dir: Path, rel: str) -> Path:
    """``bundle_dir / rel``, for a name that stays inside the bundle directory."""
    if not stays_inside(rel):
        raise BundleError(f"{bundle_dir}: the manifest names a file outside the bundle: {rel!r}")
    return Path(bundle_dir) / rel


def verify_files(bundle_dir: Path, files: Mapping[str, str]) -> None:
    """Every file of ``files`` (name -> sha256, the manifest's list) is there, unchanged."""
    for rel, expected in files.items():
        path = _inside(bundle_dir, rel)
        if not path.is_file():
            raise BundleError(f"{bundle_dir}: {rel} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"{bundle_dir}: {rel} does not match its sha256 in the manifest "
                f"(expected {expected[:12]}..., got {actual[:12]}...): the file was changed"
            )


def _npy_shape(path: Path) -> str:
    """'float32 (n, dim)' from a .npy header, without reading the data."""
    try:
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (OSError, ValueError) as exc:
        return f"no .npy array ({exc})"
    return f"{np.dtype(dtype).name} {tuple(int(d) for d in shape)}"


def _checked_npy(bundle_dir: Path, name: str, expected: str) -> Path:
    """The path of a .npy file the manifest names, after checking it holds ``expected``
    ('float32 (n, dim)', as ``_npy_shape`` reads it)."""
    path = _inside(bundle_dir, name)
    found = _npy_shape(path)
    if found != expected:
        raise BundleError(f"{bundle_dir}: {name} holds {found}, the manifest says {expected}")
    return path


def load_bundle(
    bundle_dir: Path, *, threads: int = 1
) -> tuple[Manifest, dict[int, LoadedClass], float]:
    """(manifest, loaded classes, load milliseconds). Verifies before loading anything."""
    import onnxruntime as ort  # heavy: only when a bundle is actually loaded

    from ocsf_detect.detector.index import SPACE, load_index

    start = time.perf_counter()
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    verify_files(bundle_dir, manifest.files)
    loaded: dict[int, LoadedClass] = {}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, info in manifest.models.items():
        io = info.model
        _check_listed(bundle_dir, info, manifest.files)
        if info.index.space != SPACE:
            raise BundleError(
                f"{bundle_dir}: class {key}'s index is in space {info.index.space!r}; "
                f"this library searches {SPACE!r}"
            )
        try:
            session = ort.InferenceSession(
                str(bundle_dir / io.file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise BundleError(
                f"{bundle_dir}: {io.file} is not a loadable ONNX model: {exc}"
            ) from exc
        _check_io(bundle_dir, info, session)
        index_path = bundle_dir / info.index.file
        try:
            index = load_index(index_path, io.dim, info.index.ef_search)
        except RuntimeError as exc:
            raise BundleError(
                f"{bundle_dir}: {info.index.file} is not a loadable index: {exc}"
            ) from exc
        if index.get_current_count() != info.index.n_items:
            raise BundleError(
                f"{bundle_dir}: {info.index.file} holds {index.get_current_count()} vectors, "
                f"the manifest says {info.index.n_items}"
            )
        ids = _load_ids(bundle_dir, info) if info.index.ids_file else None
        vectors_path = None
        if info.index.vectors_file:
            vectors_path = bundle_dir / info.index.vectors_file
            found = _npy_shape(vectors_path)
            expected = f"float32 {(info.index.n_items, io.dim)}"
            if found != expected:
                raise BundleError(
                    f"{bundle_dir}: {info.index.vectors_file} holds {found}, "
                    f"the manifest says {expected}"
                )
        isolation = None
        if info.isolation is not None:
            isolation = _load_isolation(bundle_dir, info)
        mass = _load_mass(bundle_dir, info) if info.index.mass_file else None
        space = _load_space(bundle_dir, info) if info.index.space_file else None
        fine_index, fine_path, fine_rows, fine_behaviours = None, None, None, None
        if info.fine is not None:
            fine_path = bundle_dir / info.fine.file
            fine_index = _load_fine(bundle_dir, info, load_index)
            if info.fine.in_features:
                fine_rows = _load_fine_rows(bundle_dir, info)
            if info.fine.behaviours_file is not None:
                fine_behaviours = _load_fine_behaviours(bundle_dir, info)
        loaded[int(key)] = LoadedClass(
            info,
            session,
            index,
            ids,
            vectors_path,
            isolation,
            index_path,
            mass,
            space,
            fine_index,
            fine_path,
            fine_rows,
            fine_behaviours,
        )
    return manifest, loaded, (time.perf_counter() - start) * 1000.0


def _check_listed(bundle_dir: Path, info: ClassModel, files: Mapping[str, str]) -> None:
    """Every file a class reads is one the manifest lists, so one that ``verify_files``
    checked against its digest."""
    ix = info.index
    named = [info.model.file, ix.file, ix.ids_file, ix.vectors_file, ix.mass_file, ix.space_file]
    if info.isolation is not None:
        named.append(info.isolation.file)
    if info.fine is not None:
        fine = info.fine
        named += [fine.file, fine.numeric_file, fine.codes_file, fine.behaviours_file]
    unlisted = [n for n in named if n is not None and n not in files]
    if unlisted:
        raise BundleError(
            f"{bundle_dir}: class {info.class_uid} reads {', '.join(unlisted)}, which the "
            "manifest's files do not list (so nothing verified it)"
        )


def _load_ids(bundle_dir: Path, info: ClassModel) -> list[Any]:
    ix = info.index
    assert ix.ids_file is not None
    try:
        ids = orjson.loads(_inside(bundle_dir, ix.ids_file).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BundleError(f"{bundle_dir}: {ix.ids_file} is not a JSON list of ids: {exc}") from exc
    if not isinstance(ids, list) or len(ids) != ix.n_items:
        found = len(ids) if isinstance(ids, list) else type(ids).__name__
        raise BundleError(
            f"{bundle_dir}: {ix.ids_file} holds {found} ids, the index {ix.n_items} vectors"
        )
    return ids


def _load_mass(bundle_dir: Path, info: ClassModel) -> np.ndarray:
    ix = info.index
    assert ix.mass_file is not None
    path = _checked_npy(bundle_dir, ix.mass_file, f"float32 {(ix.n_items,)}")
    mass = np.load(path, allow_pickle=False)
    if not np.all((mass >= 1) & (mass <= ix.mass_cap)):
        raise BundleError(
            f"{bundle_dir}: {ix.mass_file} holds masses outside 1..{ix.mass_cap} (mass_cap)"
        )
    return mass


def _load_space(bundle_dir: Path, info: ClassModel) -> np.ndarray:
    """The indexed behaviours in the weighted feature space: one float32 row per indexed
    vector, as wide as the class's features in that space (numeric columns plus each
    categorical field's one-hot width)."""
    from ocsf_detect.features.pipeline import FeaturePipeline

    ix = info.index
    assert ix.space_file is not None
    pipeline = FeaturePipeline(info.features)
    width = pipeline.n_numeric + sum(pipeline.cardinalities)
    expected = f"float32 {(ix.n_items, width)}"
    found = _npy_shape(bundle_dir / ix.space_file)
    if found != expected:
        raise BundleError(
            f"{bundle_dir}: {ix.space_file} holds {found}, the manifest says {expected}"
        )
    if ix.rerank_candidates < 1 or ix.space_weights is None:
        raise BundleError(
            f"{bundle_dir}: class {info.class_uid} has a feature space but no "
            "rerank_candidates or space_weights"
        )
    if len(ix.space_weights) != len(pipeline.cardinalities):
        raise BundleError(
            f"{bundle_dir}: class {info.class_uid} has {len(ix.space_weights)} space "
            f"weights for {len(pipeline.cardinalities)} categorical fields"
        )
    return np.load(bundle_dir / ix.space_file, mmap_mode="r", allow_pickle=False)


def _load_fine(bundle_dir: Path, info: ClassModel, load_index: Any) -> Any:
    """The fine view's index (format 13), checked against the manifest."""
    fine = info.fine
    assert fine is not None
    if info.tails is None:
        raise BundleError(f"{bundle_dir}: class {info.class_uid} has a fine view but no tails")
    try:
        index = load_index(_inside(bundle_dir, fine.file), info.model.dim, fine.ef_search)
    except RuntimeError as exc:
        raise BundleError(f"{bundle_dir}: {fine.file} is not a loadable index: {exc}") from exc
    if index.get_current_count() != fine.n_items:
        raise BundleError(
            f"{bundle_dir}: {fine.file} holds {index.get_current_count()} vectors, "
            f"the manifest says {fine.n_items}"
        )
    return index


def _load_fine_rows(bundle_dir: Path, info: ClassModel) -> FineRows:
    """The fine view's events in the feature space (format 15), memory-mapped and checked
    against the manifest: one numeric row and one row of codes per indexed event."""
    fine = info.fine
    assert fine is not None
    assert fine.numeric_file is not None
    if fine.codes_file is None or fine.category_weights is None or fine.novel_weight is None:
        raise BundleError(
            f"{bundle_dir}: class {info.class_uid}'s fine view has numeric rows but no "
            "codes_file, category_weights or novel_weight"
        )
    n, n_numeric, n_fields = fine.n_items, info.model.n_numeric, info.model.n_categorical
    numeric = _checked_npy(bundle_dir, fine.numeric_file, f"float32 {(n, n_numeric)}")
    codes = _checked_npy(bundle_dir, fine.codes_file, f"int32 {(n, n_fields)}")
    if len(fine.category_weights) != n_fields:
        raise BundleError(
            f"{bundle_dir}: class {info.class_uid}'s fine view has "
            f"{len(fine.category_weights)} category weights for {n_fields} categorical fields"
        )
    return FineRows.of(
        np.load(numeric, mmap_mode="r", allow_pickle=False),
        np.load(codes, mmap_mode="r", allow_pickle=False),
        fine.category_weights,
    )


def _load_fine_behaviours(bundle_dir: Path, info: ClassModel) -> np.ndarray:
    """Each indexed behaviour's row in the fine view (format 15): one per vector of the
    k-NN index, each a row of the view or -1."""
    fine = info.fine
    assert fine is not None
    assert fine.behaviours_file is not None
    path = _checked_npy(bundle_dir, fine.behaviours_file, f"int32 {(info.index.n_items,)}")
    rows = np.load(path, allow_pickle=False)
    if len(rows) and (rows.min() < -1 or rows.max() >= fine.n_items):
        raise BundleError(
            f"{bundle_dir}: {fine.behaviours_file} names rows outside the fine view's "
            f"{fine.n_items}"
        )
    return rows


def _load_isolation(bundle_dir: Path, info: ClassModel) -> IsolationTrees:
    assert info.isolation is not None
    if info.tails is None:
        raise BundleError(f"{bundle_dir}: class {info.class_uid} has isolation trees but no tails")
    try:
        trees = IsolationTrees.load(bundle_dir / info.isolation.file)
        trees.check(info.model.n_numeric, info.model.n_categorical)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise BundleError(
            f"{bundle_dir}: {info.isolation.file} is not a usable isolation forest: {exc}"
        ) from exc
    if len(trees.roots) != info.isolation.trees:
        raise BundleError(
            f"{bundle_dir}: {info.isolation.file} holds {len(trees.roots)} trees, "
            f"the manifest says {info.isolation.trees}"
        )
    return trees


def _check_io(bundle_dir: Path, info: ClassModel, session: Any) -> None:
    io = info.model
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    expected = {io.input_numeric: io.n_numeric, io.input_categorical: io.n_categorical}
    for name, width in expected.items():
        if name not in inputs:
            raise BundleError(f"{bundle_dir}: {io.file} has no input named {name!r}")
        if inputs[name][1] != width:
            raise BundleError(
                f"{bundle_dir}: {io.file} input {name!r} has width {inputs[name][1]}, "
                f"the manifest says {width}"
            )
    if io.output not in outputs:
        raise BundleError(f"{bundle_dir}: {io.file} has no output named {io.output!r}")
    # The output width can be symbolic in the graph: run one all-missing row to see it.
    probe = session.run(
        [io.output],
        {
            io.input_numeric: np.zeros((1, io.n_numeric), dtype=np.float32),
            io.input_categorical: np.zeros((1, io.n_categorical), dtype=np.int64),
        },
    )[0]
    if probe.shape != (1, io.dim):
        raise BundleError(
            f"{bundle_dir}: {io.file} output {io.output!r} has dimension {probe.shape[-1]}, "
            f"the manifest says {io.dim}"
        )
    spec_width = len(info.features.numeric_stats or [])
    if spec_width > io.n_numeric:
        raise BundleError(
            f"{bundle_dir}: feature spec of class {info.class_uid} does not fit {io.file}"
        )


def embedding_of(
    session: Any, info: ClassModel, numeric: np.ndarray, categorical: np.ndarray
) -> np.ndarray:
    io = info.model
    out = session.run([io.output], {io.input_numeric: numeric, io.input_categorical: categorical})
    return np.asarray(out[0], dtype=np.float32)
