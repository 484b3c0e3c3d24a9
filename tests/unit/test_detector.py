"""The detector: ONNX parity, bundle round trip and tamper detection, calibration,
HNSW recall, vectorised scoring."""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest

from ocsf_detect.detector.archive import ArchiveError, extract_archive, write_archive
from ocsf_detect.detector.bundle import BundleError, read_manifest
from ocsf_detect.detector.calibrate import calibrate, severity_ids
from ocsf_detect.detector.index import (
    MAX_EF,
    ExactBase,
    IndexParams,
    build_index,
    distance_ratio,
    distinct,
    distinct_net,
    exact_knn,
    knn,
    knn_score,
    recheck,
    rescore_exact,
    search_quality,
    search_work,
    tune_ef,
)
from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect.ocsf import Rejected, Unsupported
from tests.conftest import EVENTS_DIR


def test_onnx_matches_torch_within_1e4_on_1000_events(
    tmp_path: Path, detector: Detector, live_traffic
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from ocsf_detect_tools.training.export import export_onnx
    from ocsf_detect_tools.training.fit import TrainConfig, embed, train_embedding

    # Given a model trained on real feature matrices of 1,000 events
    events = [e for e in live_traffic.events if e["class_uid"] == 4001][:1000]
    parsed = [detector.parser.parse_object(e) for e in events]
    pipeline = detector.pipeline(4001)
    m = pipeline.transform_parsed(parsed)  # type: ignore[arg-type]
    model, _ = train_embedding(
        m.numeric,
        m.categorical,
        pipeline.cardinalities,
        TrainConfig(epochs=1, max_steps=20, width=32, dim=16),
    )
    # When it is exported and run by onnxruntime
    path = export_onnx(model, m.numeric.shape[1], m.categorical.shape[1], tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"numeric": m.numeric, "categorical": m.categorical})[0]
    # Then both agree within 1e-4 and rows are unit vectors
    with torch.no_grad():
        want = embed(model, m.numeric, m.categorical)
    assert len(events) == 1000
    assert np.abs(got - want).max() < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_bundle_round_trip_reproduces_golden_scores(bundle_dir: Path, detector: Detector) -> None:
    manifest = read_manifest(bundle_dir)
    assert manifest.classes == [3002, 4001, 4003]
    assert detector.bundle_version == manifest.bundle_version
    assert manifest.bundle_version.startswith("1.0.0+")
    result = detector.selftest()
    expected = [g.score for g in manifest.golden_events]
    assert len(expected) >= 6
    assert np.allclose(result["scores"], expected, atol=1e-5)
    for m in manifest.models.values():
        assert m.index.recall_at_k >= 0.98
        assert m.threshold > 0
        assert [b.severity_id for b in m.severity_bands] == [2, 3, 4, 5]
        assert set(manifest.files) >= {m.model.file, m.index.file}
        # each view's tail knows the range its held-out events measure
        assert m.tails is not None
        for tail in (m.tails.knn, m.tails.isolation):
            assert tail.measured == pytest.approx(math.log(m.heldout_events + 1))


def test_archive_round_trip(tmp_path: Path, bundle_dir: Path) -> None:
    archive = write_archive(bundle_dir, tmp_path / "bundle.zip")
    again = write_archive(bundle_dir, tmp_path / "again.zip")
    assert archive.read_bytes() == again.read_bytes()  # deterministic
    unpacked = extract_archive(archive, tmp_path / "x")
    assert Detector.load(unpacked).bundle_version == read_manifest(bundle_dir).bundle_version


def test_an_archive_holds_the_bundle_and_nothing_beside_it(
    tmp_path: Path, bundle_dir: Path
) -> None:
    # Given a bundle directory that also holds a secret and an editor's file
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / ".env").write_text("AWS_SECRET_ACCESS_KEY=...")
    (copy / "manifest.json~").write_text("{}")
    # Then the archive holds the manifest and the files it lists, nothing else
    with zipfile.ZipFile(write_archive(copy, tmp_path / "b.zip")) as zf:
        names = set(zf.namelist())
    listed = set(read_manifest(copy).files)
    assert names == {f"bundle/{n}" for n in {"manifest.json", *listed}}
    # a manifest that lists a file outside the bundle is refused, not followed
    manifest = json.loads((copy / "manifest.json").read_text())
    (tmp_path / "secret").write_text("outside")
    (copy / "manifest.json").write_text(
        json.dumps({**manifest, "files": {**manifest["files"], "../secret": "0" * 64}})
    )
    with pytest.raises(ArchiveError, match="lists files outside the bundle"):
        write_archive(copy, tmp_path / "d.zip")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    # and a bundle that lacks a file it lists is refused, not packed without it
    (copy / sorted(listed)[0]).unlink()
    with pytest.raises(ArchiveError, match="lacks files its manifest lists"):
        write_archive(copy, tmp_path / "c.zip")


def test_a_damaged_archive_member_is_an_archive_error(tmp_path: Path, bundle_dir: Path) -> None:
    # Given an archive whose compressed data is damaged past the ZIP directory's checks
    archive = write_archive(bundle_dir, tmp_path / "bundle.zip")
    with zipfile.ZipFile(archive) as zf:
        info = max(zf.infolist(), key=lambda i: i.compress_size)
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 16, start + min(info.compress_size, 4096)):
        data[i] ^= 0x5A
    archive.write_bytes(bytes(data))
    # When it is unpacked, Then the failure is the archive's, with a message
    with pytest.raises(ArchiveError, match=r"damaged|not a ZIP"):
        extract_archive(archive, tmp_path / "x")


@pytest.fixture
def bundle_copy(tmp_path: Path, bundle_dir: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def test_tamper_changed_byte(bundle_copy: Path) -> None:
    model = next(bundle_copy.glob("model-*.onnx"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{model.name} does not match its sha256"):
        Detector.load(bundle_copy)


def test_tamper_missing_file(bundle_copy: Path) -> None:
    index = next(bundle_copy.glob("index-*.bin"))
    index.unlink()
    with pytest.raises(BundleError, match=rf"{index.name} is listed in the manifest but missing"):
        Detector.load(bundle_copy)


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_tamper_wrong_dims(bundle_copy: Path) -> None:
    def edit(m: dict) -> None:
        m["models"]["4001"]["model"]["dim"] = 999

    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match="the manifest says 999"):
        Detector.load(bundle_copy)


def test_the_indexed_vectors_are_read_from_the_index_file(
    bundle_dir: Path, detector: Detector
) -> None:
    # Given a bundle of the current format, which stores each class's vectors once
    assert not list(bundle_dir.glob("vectors-*.npy"))
    loaded = detector._classes[4001]
    # Then the re-check reads them from the index file, as the index holds them
    vectors = np.asarray(loaded.vectors)
    assert isinstance(loaded.vectors, np.memmap) or isinstance(loaded.vectors.base, np.memmap)
    n = loaded.index.get_current_count()
    assert vectors.shape == (n, loaded.info.model.dim)
    assert np.array_equal(vectors, np.asarray(loaded.index.get_items(list(range(n))), np.float32))


def test_index_file_vectors_refuses_a_file_it_does_not_know(tmp_path: Path) -> None:
    from ocsf_detect.detector.index import index_file_vectors

    base = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    path = tmp_path / "index.bin"
    build_index(base, IndexParams(ef_construction=32)).save_index(str(path))
    assert np.array_equal(index_file_vectors(path, 50, 8), base)
    assert index_file_vectors(path, 49, 8) is None  # another count than the manifest's
    assert index_file_vectors(path, 50, 4096) is None  # vectors would overrun the record
    path.write_bytes(b"not an index")
    assert index_file_vectors(path, 50, 8) is None


def test_the_same_graph_saves_to_the_same_bytes(tmp_path: Path) -> None:
    from ocsf_detect.detector.index import canonical_index_file, index_file_vectors, load_index

    base = np.random.default_rng(0).normal(size=(600, 16)).astype(np.float32)
    queries = np.random.default_rng(1).normal(size=(50, 16)).astype(np.float32)
    params = IndexParams(M=16, ef_construction=64)
    files = []
    for name in ("a.bin", "b.bin"):
        index = build_index(base, params)
        index.save_index(str(tmp_path / name))
        files.append((tmp_path / name).read_bytes())
        assert canonical_index_file(tmp_path / name)
        # the file still loads, searches as the index it was saved from and holds the vectors
        loaded = load_index(tmp_path / name, 16, max(params.ef_search, params.k))
        want, got = index.knn_query(queries, k=8), loaded.knn_query(queries, k=8)
        assert np.array_equal(want[0], got[0])
        assert np.array_equal(want[1], got[1])
        assert np.array_equal(index_file_vectors(tmp_path / name, 600, 16), base)
    # hnswlib leaves whatever the allocator held in one part of the file; canonical, the
    # two files agree byte for byte
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    # a file of another layout is left as it is
    odd = tmp_path / "odd.bin"
    odd.write_bytes(files[0] + b"x")
    assert not canonical_index_file(odd)
    assert odd.read_bytes() == files[0] + b"x"
    odd.write_bytes(b"short")
    assert not canonical_index_file(odd)


def test_a_saved_index_is_read_as_hnswlib_reads_it(tmp_path: Path) -> None:
    """The bundle's indexes are read with numpy and handed to hnswlib as its pickled state:
    the same graph as hnswlib's own loader restores, and the same answers."""
    import hnswlib

    from ocsf_detect.detector.index import _index_from_file, canonical_index_file, load_index

    rng = np.random.default_rng(0)
    base = rng.normal(size=(3000, 16)).astype(np.float32)
    queries = rng.normal(size=(200, 16)).astype(np.float32)
    for params in (IndexParams(M=16, ef_construction=64), IndexParams(M=4, ef_construction=32)):
        path = tmp_path / f"index-{params.M}.bin"
        build_index(base, params).save_index(str(path))
        assert canonical_index_file(path)
        native = hnswlib.Index(space="l2", dim=16)
        native.load_index(str(path))
        read = _index_from_file(path, 16)
        assert read is not None
        want, got = native.__getstate__()[0], read.__getstate__()[0]
        assert max(want["element_levels"]) >= 2  # upper layers exist and were read
        for key in ("element_levels", "data_level0", "link_lists", "label_lookup_external"):
            assert np.array_equal(want[key], got[key]), key
        for key in ("max_level", "enterpoint_node", "M", "max_M0", "mult"):
            assert want[key] == got[key], key
        native.set_ef(32)
        loaded = load_index(path, 16, 32)
        assert np.array_equal(native.knn_query(queries, k=8)[0], loaded.knn_query(queries, k=8)[0])

    # another layout is left to hnswlib's loader: room for more vectors than it holds, ...
    roomy = hnswlib.Index(space="l2", dim=16)
    roomy.init_index(max_elements=4000, ef_construction=32, M=8)
    roomy.add_items(base, np.arange(len(base)))
    roomy.save_index(str(tmp_path / "roomy.bin"))
    assert _index_from_file(tmp_path / "roomy.bin", 16) is None
    assert load_index(tmp_path / "roomy.bin", 16, 32).get_current_count() == 3000
    # ... or bytes after the last link list, or a file cut short
    good = (tmp_path / "index-16.bin").read_bytes()
    for name, data in (("long.bin", good + bytes(4)), ("short.bin", good[:-4]), ("tiny", b"x")):
        (tmp_path / name).write_bytes(data)
        assert _index_from_file(tmp_path / name, 16) is None


def test_recurrence_masses_are_loaded_checked_and_served(
    bundle_copy: Path, detector: Detector, live_traffic
) -> None:
    from ocsf_detect.detector.bundle import sha256_file

    # Given the bundle with a mass file for 4001 (every indexed behaviour counted twice)
    manifest = read_manifest(bundle_copy)
    n_items = manifest.models["4001"].index.n_items
    path = bundle_copy / "mass-4001.npy"

    def with_masses(mass: np.ndarray, cap: int) -> None:
        np.save(path, mass.astype(np.float32), allow_pickle=False)

        def edit(m: dict) -> None:
            m["models"]["4001"]["index"].update(mass_file=path.name, mass_cap=cap)
            m["files"][path.name] = sha256_file(path)

        _edit_manifest(bundle_copy, edit)

    with_masses(np.full(n_items, 2.0), cap=2)
    doubled = Detector.load(bundle_copy)
    assert doubled._classes[4001].mass is not None
    # Then each event's k nearest are counted twice each: the score is the mean over the
    # nearest k/2 behaviours, never above the plain mean over k
    events = [e for e in live_traffic.events[:600] if e.get("class_uid") == 4001]
    plain = [o.score for o in detector.score_objects(events) if isinstance(o, Scored)]
    twice = [o.score for o in doubled.score_objects(events) if isinstance(o, Scored)]
    assert all(t <= p + 1e-5 for t, p in zip(twice, plain, strict=True))
    assert sum(twice) < sum(plain)
    # And masses of the wrong length or outside 1..mass_cap are refused, naming the file
    with_masses(np.full(n_items + 1, 2.0), cap=2)
    with pytest.raises(BundleError, match=r"mass-4001\.npy holds"):
        Detector.load(bundle_copy)
    with_masses(np.full(n_items, 3.0), cap=2)
    with pytest.raises(BundleError, match=r"outside 1\.\.2"):
        Detector.load(bundle_copy)


def test_tamper_isolation_trees(bundle_copy: Path) -> None:
    from ocsf_detect.detector.bundle import sha256_file

    # Given an isolation file replaced by one of fewer trees, its hash updated to match
    path = bundle_copy / "isolation-4001.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["roots"] = arrays["roots"][:3]
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    _edit_manifest(bundle_copy, lambda m: m["files"].update({path.name: sha256_file(path)}))
    # Then loading names the file and both counts
    with pytest.raises(BundleError, match=r"isolation-4001\.npz holds 3 trees, the manifest"):
        Detector.load(bundle_copy)
    # And links that point outside the arrays are refused
    arrays["roots"] = np.array([10**6], dtype=np.int32)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    _edit_manifest(bundle_copy, lambda m: m["files"].update({path.name: sha256_file(path)}))
    with pytest.raises(BundleError, match="not a usable isolation forest"):
        Detector.load(bundle_copy)


def test_a_file_a_class_reads_must_be_one_the_manifest_lists(bundle_copy: Path) -> None:
    # Given a manifest whose ids file was taken off the list (so no digest checks it)
    _edit_manifest(bundle_copy, lambda m: m["files"].pop("ids-4001.json"))
    with pytest.raises(BundleError, match=r"class 4001 reads ids-4001\.json, which the"):
        Detector.load(bundle_copy)


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/model.onnx", "sub/../../x.onnx"])
def test_a_file_outside_the_bundle_is_refused(bundle_copy: Path, name: str) -> None:
    def edit(m: dict) -> None:
        m["files"][name] = m["files"].pop("model-4001.onnx")
        m["models"]["4001"]["model"]["file"] = name

    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match="names a file outside the bundle"):
        Detector.load(bundle_copy)


def test_corrupt_ids_and_trees_with_matching_digests_are_bundle_errors(bundle_copy: Path) -> None:
    from ocsf_detect.detector.bundle import sha256_file

    def replace(name: str, data: bytes) -> None:
        (bundle_copy / name).write_bytes(data)
        digest = sha256_file(bundle_copy / name)
        _edit_manifest(bundle_copy, lambda m: m["files"].update({name: digest}))

    original = (bundle_copy / "ids-4001.json").read_bytes()
    replace("ids-4001.json", b"not json")
    with pytest.raises(BundleError, match=r"ids-4001\.json is not a JSON list of ids"):
        Detector.load(bundle_copy)
    replace("ids-4001.json", orjson.dumps(orjson.loads(original)[:-1]))
    with pytest.raises(BundleError, match=r"ids-4001\.json holds \d+ ids, the index \d+"):
        Detector.load(bundle_copy)
    replace("ids-4001.json", original)
    replace("isolation-4001.npz", b"garbage, not a zip")
    with pytest.raises(BundleError, match="not a usable isolation forest"):
        Detector.load(bundle_copy)


def test_an_index_of_another_dimension_is_refused(tmp_path: Path) -> None:
    from ocsf_detect.detector.index import IndexParams, build_index, load_index

    rng = np.random.default_rng(0)
    path = tmp_path / "index.bin"
    build_index(rng.normal(size=(50, 8)).astype(np.float32), IndexParams()).save_index(str(path))
    assert load_index(path, 8, 32).get_current_count() == 50
    # hnswlib itself reads it as 4 floats a vector without a word
    with pytest.raises(RuntimeError, match=r"its vectors are 32 bytes \(8 floats\), not 4"):
        load_index(path, 4, 32)


def test_tamper_newer_format(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda m: m.update(format_version=99))
    with pytest.raises(BundleError, match="format 99 is newer"):
        Detector.load(bundle_copy)


@pytest.mark.parametrize("version", [True, -1, 0, "11", 11.0])
def test_a_format_version_that_is_not_a_positive_integer_is_refused(
    bundle_copy: Path, version: object
) -> None:
    _edit_manifest(bundle_copy, lambda m: m.update(format_version=version))
    with pytest.raises(BundleError, match="format_version is missing or not a positive integer"):
        Detector.load(bundle_copy)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        Detector.load(tmp_path)


def test_threshold_calibration_known_answer() -> None:
    scores = np.arange(10_000) / 10_000.0  # uniform on [0, 1)
    cal = calibrate(scores, alert_rate=0.01)
    assert cal.threshold == pytest.approx(0.99, abs=2e-4)
    assert (scores >= cal.threshold).mean() == pytest.approx(0.01, abs=2e-4)
    # Medium: the 0.998 quantile, capped halfway between the threshold and the maximum
    assert cal.bands[1].min_score == pytest.approx((0.99 + 0.9999) / 2, abs=2e-4)
    few = calibrate(np.arange(500) / 500.0, alert_rate=0.005)  # quantile = maximum here
    assert few.bands[0].min_score < few.bands[1].min_score < few.bands[2].min_score
    ids = severity_ids(np.array([0.5, 0.9905, 0.9985, 1.005, 100.0]), cal.bands)
    assert ids.tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="alert rate"):
        calibrate(scores, 0.0)


def test_threshold_above_a_tie_keeps_the_alert_rate() -> None:
    # Repetitive traffic: 10% of held-out scores tie exactly at the 99.5th percentile
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0, 1, 900), np.full(100, 2.0)])
    cal = calibrate(scores, alert_rate=0.005)
    assert cal.threshold > 2.0
    assert (scores >= cal.threshold).mean() == 0.0  # not the 10% that tie
    # Every held-out event identical to its neighbours: nothing at score 0 alerts
    zeros = calibrate(np.zeros(1000), alert_rate=0.005)
    assert zeros.threshold > 0
    assert severity_ids(np.zeros(3), zeros.bands).tolist() == [1, 1, 1]
    # Served scores are float32 and compared in float32: the tie stays below the threshold
    tied32 = np.concatenate([rng.uniform(0, 0.5, 900), np.full(100, 0.7)]).astype(np.float32)
    cal32 = calibrate(tied32, alert_rate=0.005)
    assert not (tied32 >= cal32.threshold).any()
    # and whatever alerts in float32 has a severity band (never Informational)
    scores32 = rng.uniform(0, 1, 5000).astype(np.float32)
    cal = calibrate(scores32, alert_rate=0.01)
    flagged = scores32[scores32 >= cal.threshold]
    assert flagged.size
    assert (severity_ids(flagged, cal.bands) >= 2).all()
    # No tie: the plain quantile, to float32 precision
    uniform = np.arange(10_000) / 10_000.0
    plain = np.quantile(uniform, 0.99, method="higher")
    assert plain <= calibrate(uniform, 0.01).threshold <= plain * (1 + 1e-7)


def test_hnsw_recall_is_measured_against_exact_search() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3000, 16)).astype(np.float32)
    queries = rng.normal(size=(200, 16)).astype(np.float32)
    index = build_index(base, IndexParams(M=16, ef_construction=200, ef_search=200, k=10))
    assert search_quality(index, base, queries, 10).recall >= 0.98
    index.set_ef(10)
    index_low = search_quality(index, base, queries, 10).recall
    assert index_low < 1.0  # the measurement can tell a worse setting apart


def _clustered_index():
    # Clustered baseline vectors in a sparse graph, where a greedy search can stall in
    # the wrong cluster
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(60, 32)) * 2
    base = (np.repeat(centers, 100, axis=0) + rng.normal(size=(6000, 32))).astype(np.float32)
    picks = rng.integers(0, 60, 1000)
    queries = (centers[picks] + rng.normal(size=(1000, 32)) * 1.3).astype(np.float32)
    index = build_index(base, IndexParams(M=8, ef_construction=32, ef_search=20, k=10))
    return index, base, queries


def test_mean_recall_hides_stalled_searches_and_ef_is_tuned_for_least_work() -> None:
    index, base, queries = _clustered_index()
    # Given an ef at which mean recall looks fine while many scores are inflated
    low = search_quality(index, base, queries, 10)
    assert low.recall >= 0.9
    assert low.score_errors > 0.1
    _, approx = knn(index, queries, 10)
    _, exact = exact_knn(base, queries, 10)
    inflated = approx.mean(1) > exact.mean(1) * 1.01 + 1e-6
    assert inflated.mean() == pytest.approx(low.score_errors)
    # When ef is tuned
    threshold = float(np.quantile(exact.mean(1), 0.95))
    measured = {}
    for e in (10, 20, 40, 80, MAX_EF):
        index.set_ef(e)
        measured[e] = search_quality(index, base, queries, 10, exact, threshold)
    for max_rechecked in (1.0, 0.1):
        ef, quality = tune_ef(
            index,
            base,
            queries,
            10,
            recall_target=0.9,
            alert_rate=0.05,
            start=10,
            max_rechecked=max_rechecked,
        )
        # Then it is the cheapest of the settings that meet the recall target and keep
        # the re-checks within bounds, counting the exact re-checks as work
        work = {
            e: search_work(e, q, len(base))
            for e, q in measured.items()
            if q.recall >= 0.9 and q.rechecked <= max_rechecked
        }
        assert ef == min(work, key=work.__getitem__)
        assert quality == measured[ef]
        assert quality.rechecked <= max_rechecked
    # and a recall target no ef meets gets the best recall found, at most MAX_EF
    ef, _ = tune_ef(index, base, queries, 10, recall_target=1.0, alert_rate=0.05, start=10)
    assert ef == MAX_EF


def test_alert_decisions_are_those_of_exact_search() -> None:
    index, base, queries = _clustered_index()
    labels, dists = knn(index, queries, 10)
    exact_labels, exact_dists = exact_knn(base, queries, 10)
    exact_scores = exact_dists.mean(1)
    threshold = float(np.quantile(exact_scores, 0.9))
    # Given searches that inflate some scores across the threshold
    wrongly_above = (dists.mean(1) >= threshold) & (exact_scores < threshold)
    assert wrongly_above.sum() > 0
    # When the scores at or above the threshold are re-checked
    redone = rescore_exact(base, queries, labels, dists, threshold)
    # Then only those were redone, and every decision is exact search's
    assert len(redone) < len(queries) / 2
    assert np.array_equal(dists.mean(1) >= threshold, exact_scores >= threshold)
    above = exact_scores >= threshold
    assert np.allclose(dists[above], exact_dists[above], atol=1e-5)
    assert np.array_equal(labels[redone], exact_labels[redone])


def test_exact_knn_on_a_prepared_base_is_the_same_search() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=(500, 8)).astype(np.float32)
    queries = rng.normal(size=(40, 8)).astype(np.float32)
    labels, dists = exact_knn(base, queries, 7)
    prepared = ExactBase.of(base)
    assert np.array_equal(prepared.vectors, base)
    assert np.allclose(prepared.squared_norms, (base.astype(np.float64) ** 2).sum(1), rtol=1e-6)
    labels_sq, dists_sq = exact_knn(prepared, queries, 7)
    assert np.array_equal(labels, labels_sq)
    assert np.array_equal(dists, dists_sq)
    brute = np.sort(np.linalg.norm(queries[:, None] - base[None], axis=2), axis=1)[:, :7]
    assert np.allclose(dists, brute, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_knn_bounded_by_an_approximate_search_finds_the_nearest(seed) -> None:
    # Given a base with exact duplicates and near-identical vectors (where the float32
    # expansion is least accurate), unit-norm like the embeddings, and queries near it
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(3000, 16))
    base[1000:1200] = base[0]  # exact duplicates
    base[1200:1400] = base[1] + rng.normal(size=(200, 16)) * 1e-6  # near-identical
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    base = base.astype(np.float32)
    near = base[:64] + rng.normal(size=(64, 16)).astype(np.float32) * 0.01
    queries = np.vstack([near, base[rng.integers(0, 3000, 100)]]).astype(np.float32)
    k = 16
    diff = base[None].astype(np.float64) - queries[:, None].astype(np.float64)
    truth = np.sort(np.sqrt((diff**2).sum(axis=2)), axis=1)[:, :k].astype(np.float32)
    labels, dists = exact_knn(base, queries, k)
    assert np.array_equal(dists, truth)
    # When the bound is the k-th distance of a search at least as far as the exact one
    # (as an approximate search's neighbours are), tightly or loosely
    for inflation in (1.0, 1.0 + 1e-6, 1.05):
        bound = dists[:, -1].astype(np.float64) * inflation
        got_labels, got_dists = exact_knn(ExactBase.of(base), queries, k, bound=bound)
        # Then the k nearest are found, at their float64 distances, and each label is a
        # vector at that distance
        assert np.array_equal(got_dists, truth)
        gap = base[got_labels].astype(np.float64) - queries[:, None, :].astype(np.float64)
        assert np.allclose(np.sqrt((gap**2).sum(axis=2)), truth, rtol=0, atol=1e-6)
        assert (got_labels == labels).mean() > 0.9
    # A bound too tight for k vectors falls back to the partial sort
    _, got_dists = exact_knn(base, queries, k, bound=dists[:, 0] * 0.5)
    assert np.array_equal(got_dists, dists)


def test_exact_knn_stays_exact_where_a_float32_ranking_cannot_tell() -> None:
    # Given vectors far from the origin that differ by a millionth of their norm: the
    # float32 expansion |q|^2 + |b|^2 - 2 q.b cannot rank them at all
    rng = np.random.default_rng(4)
    centre = rng.normal(size=16) * 300.0
    base = (centre + rng.normal(size=(2000, 16)) * 1e-3).astype(np.float32)
    queries = (centre + rng.normal(size=(20, 16)) * 1e-3).astype(np.float32)
    k = 8
    diff = base[None].astype(np.float64) - queries[:, None].astype(np.float64)
    full = np.sqrt((diff**2).sum(axis=2))
    truth_labels = np.argsort(full, axis=1, kind="stable")[:, :k]
    # When searched exactly
    labels, dists = exact_knn(base, queries, k)
    # Then the k nearest are found all the same, by their float64 distances
    assert np.array_equal(labels, truth_labels)
    assert np.array_equal(dists, np.take_along_axis(full, truth_labels, axis=1).astype(np.float32))


def test_the_recheck_of_alerts_uses_the_bound_and_stays_exact() -> None:
    index, base, queries = _clustered_index()
    labels, dists = knn(index, queries, 10)
    rows = np.arange(len(queries))
    recheck(base, queries, labels, dists, rows)
    exact_labels, exact_dists = exact_knn(base, queries, 10)
    assert np.array_equal(dists, exact_dists)
    assert np.array_equal(labels, exact_labels)


def test_distinct_keeps_a_radius_net() -> None:
    rng = np.random.default_rng(3)
    spread = rng.normal(size=(300, 8)) * 5.0
    flood = np.repeat(rng.normal(size=(1, 8)), 2000, axis=0) + rng.normal(size=(2000, 8)) * 0.01
    vectors = np.vstack([spread, flood]).astype(np.float32)
    kept = distinct(vectors, radius=0.5, seed=0)
    assert np.all(np.diff(kept) > 0)
    net = vectors[kept]
    # (almost) no two kept vectors within the radius: the nearest kept one is found by
    # approximate search ...
    _, d = exact_knn(net, net, 2)
    assert (d[:, 1] < 0.5).mean() <= 0.01
    # ... every dropped vector within it of a kept one ...
    _, d = exact_knn(net, vectors, 1)
    assert d.max() < 0.5
    # ... so the flood of near-identical events counts about once
    assert (kept >= 300).sum() <= 3
    assert (kept < 300).sum() >= 290
    assert distinct(vectors, radius=0.0).tolist() == list(range(len(vectors)))


def test_distinct_net_names_the_owner_of_every_vector() -> None:
    rng = np.random.default_rng(6)
    vectors = (rng.normal(size=(600, 5)) * 2.0).astype(np.float32)
    kept, owner = distinct_net(vectors, radius=1.0, seed=1)
    assert kept.tolist() == distinct(vectors, radius=1.0, seed=1).tolist()
    assert owner[kept].tolist() == list(range(len(kept)))  # a kept vector owns itself
    # every vector lies within the radius of its owner
    gaps = np.linalg.norm(vectors - vectors[kept][owner], axis=1)
    assert gaps.max() < 1.0
    assert len(kept) < len(vectors)
    all_rows, own = distinct_net(vectors, radius=0.0)
    assert all_rows.tolist() == own.tolist() == list(range(len(vectors)))


def test_knn_score_counts_each_behaviour_as_its_mass_up_to_k() -> None:
    labels = np.array([[0, 1, 2, 3], [1, 0, 2, 3]])
    dists = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    # without masses (older bundles) and with every mass 1: the mean distance
    assert knn_score(labels, dists, None).tolist() == [1.5, 1.5]
    assert knn_score(labels, dists, np.ones(4, np.float32)).tolist() == [1.5, 1.5]
    # behaviour 0 recurs (mass 2): it stands for two of the four neighbours of the first
    # query, pushing the farthest out; the second query meets it second
    mass = np.array([2.0, 1.0, 1.0, 1.0], np.float32)
    assert knn_score(labels, dists, mass).tolist() == pytest.approx(
        [(0 + 0 + 1 + 2) / 4, (0 + 1 + 1 + 2) / 4]
    )
    # however large, a mass never stands for more than k
    assert knn_score(labels, dists, np.full(4, 9.0, np.float32)).tolist() == [0.0, 0.0]


def test_a_burst_counts_once_and_recurring_behaviour_up_to_the_cap() -> None:
    from ocsf_detect_tools.build import recurrence_mass

    hour = 3_600_000
    owner = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    times = np.array([5, 6, 7, 8, 0, hour, 5 * hour, 0])  # 0: a burst within 10 ms
    assert recurrence_mass(owner, times, 3, 3600, cap=2).tolist() == [1.0, 2.0, 1.0]
    assert recurrence_mass(owner, times, 3, 3600, cap=8).tolist() == [1.0, 3.0, 1.0]


def test_distance_ratio_measures_the_embedding_scale() -> None:
    rng = np.random.default_rng(4)
    features = rng.normal(size=(500, 6))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    embedded = 0.02 * features @ rotation
    assert distance_ratio(embedded, features) == pytest.approx(0.02, rel=1e-6)


def test_contaminated_flood_does_not_pull_its_own_scores_down() -> None:
    """A baseline that is mostly one repeated attack: with all events indexed the attack
    scores lowest; on the distinct net it is no longer the densest place."""
    rng = np.random.default_rng(5)
    normal = rng.normal(size=(400, 4)) * 3.0
    attack = np.array([[12.0, 0, 0, 0]]) + rng.normal(size=(3000, 4)) * 0.05
    base = np.vstack([normal, attack]).astype(np.float32)
    probe_normal = (rng.normal(size=(50, 4)) * 3.0).astype(np.float32)
    probe_attack = (np.array([[12.0, 0, 0, 0]]) + rng.normal(size=(50, 4)) * 0.05).astype(
        np.float32
    )

    def scores(index_base: np.ndarray, probes: np.ndarray) -> np.ndarray:
        return exact_knn(index_base, probes, 16)[1].mean(axis=1)

    assert scores(base, probe_attack).mean() < scores(base, probe_normal).mean()
    net = base[distinct(base, radius=1.0)]
    assert scores(net, probe_attack).mean() > scores(net, probe_normal).mean()


def test_score_batch_gives_one_outcome_per_record_in_order(
    detector: Detector, live_traffic
) -> None:
    good = [orjson.dumps(e) for e in live_traffic.events[:300]]
    unsupported = (EVENTS_DIR / "ocsf" / "process_activity_unsupported.json").read_bytes()
    batch = [*good[:100], b"not json", unsupported, *good[100:]]
    outcomes = detector.score_batch(batch)
    assert len(outcomes) == len(batch)
    assert isinstance(outcomes[100], Rejected)
    assert isinstance(outcomes[101], Unsupported)
    scored = [o for o in outcomes if isinstance(o, Scored)]
    assert len(scored) == 300
    # Scoring decodes no event a second time: the explanations of the anomalies come
    # from the feature matrices, and each event stays its text until it is read.
    assert all(o.parsed._event is None for o in scored)
    for raw, outcome in zip(good[:100], outcomes[:100], strict=True):
        assert isinstance(outcome, Scored)
        assert outcome.event == orjson.loads(raw)
        assert outcome.is_anomaly == (outcome.score >= outcome.threshold)
        assert len(outcome.neighbors) == 3
        assert outcome.neighbors[0][1] <= outcome.neighbors[-1][1]
    # The same events one by one give the same scores as in a batch.
    singles = [detector.score_batch([raw])[0] for raw in good[:20]]
    assert [s.score for s in singles] == [o.score for o in outcomes[:20]]  # type: ignore[union-attr]


def test_attacks_score_higher_than_normal_traffic(detector: Detector, live_traffic) -> None:
    outcomes = detector.score_objects(live_traffic.events)
    ratio = np.array([o.score / o.threshold for o in outcomes if isinstance(o, Scored)])
    labels = np.array(
        [
            lab.is_malicious
            for lab, o in zip(live_traffic.labels, outcomes, strict=True)
            if isinstance(o, Scored)
        ]
    )
    assert labels.sum() > 0
    assert np.median(ratio[labels == 1]) > np.quantile(ratio[labels == 0], 0.9)


def test_alerts_are_rechecked_up_to_the_batch_limit(
    bundle_dir: Path, baseline_traffic, live_traffic
) -> None:
    from ocsf_detect.detector.index import RECHECK_MIN

    detector = Detector.load(bundle_dir)  # fresh counters
    # Normal traffic: every score at the threshold is re-checked, none left unchecked
    normal = [e for e in baseline_traffic.events if e["class_uid"] == 4001][:600]
    outcomes = detector.score_objects(normal)
    anomalies = sum(1 for o in outcomes if isinstance(o, Scored) and o.is_anomaly)
    assert detector.rechecks.unchecked == 0
    assert detector.rechecks.rechecked >= anomalies
    # A flood of attacks: the re-checks stop at the limit; the rest are counted
    attacks = [
        e
        for e, lab in zip(live_traffic.events, live_traffic.labels, strict=True)
        if lab.is_malicious and e["class_uid"] == 4001
    ]
    alerting = [
        e
        for e, o in zip(attacks, detector.score_objects(attacks), strict=True)
        if isinstance(o, Scored) and o.is_anomaly
    ]
    assert alerting
    flood = (alerting * (4 * RECHECK_MIN))[: 4 * RECHECK_MIN]  # limit: RECHECK_MIN
    before = (detector.rechecks.rechecked, detector.rechecks.unchecked)
    detector.score_objects(flood)  # every one reached the threshold before: all do again
    assert detector.rechecks.rechecked - before[0] == RECHECK_MIN
    assert detector.rechecks.unchecked - before[1] == len(flood) - RECHECK_MIN


def test_anchored_normalisation_keeps_how_far_an_event_is() -> None:
    torch = pytest.importorskip("torch")
    from ocsf_detect_tools.training.model import TabularResNet

    # Given a model whose free coordinates grow with the input
    torch.manual_seed(0)
    model = TabularResNet(8, [4], width=16, blocks=1, dim=8).eval()
    model.anchor.fill_(1.0)
    direction = torch.randn(1, 8)
    cat = torch.zeros(1, 1, dtype=torch.long)
    with torch.no_grad():
        origin = model(torch.zeros(1, 8), cat)
        far = [model(direction * scale, cat) for scale in (1.0, 10.0, 100.0)]
    # Then outputs are unit vectors and farther inputs land farther away
    distances = [float((f - origin).norm()) for f in far]
    assert all(abs(float(f.norm()) - 1.0) < 1e-5 for f in far)
    assert distances[0] < distances[1] < distances[2]


def test_numeric_shortcut_keeps_far_out_values_far() -> None:
    torch = pytest.importorskip("torch")
    from ocsf_detect_tools.training.model import TabularResNet

    # Given the same network with and without the linear numeric shortcut
    cat = torch.zeros(1, 1, dtype=torch.long)
    direction = torch.zeros(1, 8)
    direction[0, 3] = 1.0  # one numeric far beyond any training value
    growth = {}
    for skip in (True, False):
        torch.manual_seed(0)
        model = TabularResNet(8, [4], width=16, blocks=1, dim=8, numeric_skip=skip).eval()
        with torch.no_grad():
            origin = model.encode(torch.zeros(1, 8), cat)
            moves = [float((model.encode(direction * t, cat) - origin).norm()) for t in (1e3, 2e3)]
        growth[skip] = moves[1] / moves[0]
    # Then with it, twice as far out moves the output twice as far; without it, the
    # normalised blocks saturate and the value's size stops mattering
    assert growth[True] == pytest.approx(2.0, rel=0.01)
    assert growth[False] == pytest.approx(1.0, abs=0.01)


def test_isometry_batches_carry_corrupted_copies() -> None:
    torch = pytest.importorskip("torch")
    from ocsf_detect_tools.training.fit import TrainConfig, _augmented
    from ocsf_detect_tools.training.model import TabularResNet

    model = TabularResNet(3, [5, 7], width=8, blocks=1, dim=4)
    num = torch.randn(50, 3)
    cat = torch.randint(0, 5, (50, 2))
    aug_num, aug_cat = _augmented(model, num, cat, TrainConfig(augment=1.0))
    assert aug_num.shape == (100, 3)
    assert torch.equal(aug_num[:50], num)
    assert torch.equal(aug_cat[:50], cat)
    assert int(aug_cat[:, 1].max()) < 7  # corrupted categories stay inside the vocabulary
    assert not torch.equal(aug_num[50:], num)


def test_uniform_corruption_stays_in_the_clip_range_and_keeps_indicators_binary() -> None:
    torch = pytest.importorskip("torch")
    from ocsf_detect_tools.training.fit import TrainConfig, _augmented
    from ocsf_detect_tools.training.model import TabularResNet

    model = TabularResNet(4, [5], width=8, blocks=1, dim=4)
    values = torch.rand(400, 2) * 2 - 1  # inside the clip, as scaled features are
    indicators = (torch.rand(400, 2) < 0.3).float()
    num, cat = torch.cat([values, indicators], dim=1), torch.randint(0, 5, (400, 1))
    config = TrainConfig(augment=1.0, augment_uniform=1.0, augment_range=3.0, scaled_columns=2)
    aug_num, _ = _augmented(model, num, cat, config)
    copies = aug_num[400:]
    assert copies[:, :2].abs().max() <= 3.0  # uniform draws within the spec's clip
    assert set(copies[:, 2:].unique().tolist()) <= {0.0, 1.0}  # indicators stay 0/1


def test_novel_amount_columns_are_corrupted_over_the_whole_clip_range() -> None:
    torch = pytest.importorskip("torch")
    from ocsf_detect_tools.training.fit import TrainConfig, _augmented
    from ocsf_detect_tools.training.model import TabularResNet

    # Given two value columns inside [-1, 1], the first a novel-amount column
    model = TabularResNet(2, [5], width=8, blocks=1, dim=4)
    num, cat = torch.rand(2000, 2) * 2 - 1, torch.randint(0, 5, (2000, 1))
    config = TrainConfig(augment=1.0, augment_uniform=0.0, augment_range=8.0, novel_columns=(0,))
    # When the batch is corrupted
    copies = _augmented(model, num, cat, config)[0][2000:]
    # Then only the novel-amount column is shown values beyond its training range
    assert copies[:, 0].abs().max() > 4.0
    assert copies[:, 0].abs().max() <= 8.0
    assert copies[:, 1].abs().max() <= 1.0


def test_the_preserved_distance_weights_novel_columns_as_the_index_radius_does() -> None:
    torch = pytest.importorskip("torch")
    from ocsf_detect.features.pipeline import FeatureMatrix
    from ocsf_detect_tools.training.fit import TrainConfig, _dense
    from ocsf_detect_tools.training.model import TabularResNet

    # Given two numerics, the second a novel-amount column, and one categorical field
    model = TabularResNet(2, [3], width=8, blocks=1, dim=4)
    num = torch.tensor([[0.5, 1.0], [-1.0, 0.0]])
    cat = torch.tensor([[0], [2]])
    config = TrainConfig(category_weight=8.0, novel_weight=2.0, novel_columns=(1,))
    # When the training target is built, then the novel column counts twice and a category
    # mismatch eight times, exactly as in the space the distinct radius is measured in
    target = _dense(model, num, cat, config)
    assert target.tolist() == [[0.5, 2.0, 8.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0, 8.0]]
    matrix = FeatureMatrix(num.numpy(), cat.numpy())
    assert matrix.dense([3], 8.0, ((1,), 2.0)).tolist() == target.tolist()
    assert num[0, 1] == 1.0  # the batch itself is not scaled


def test_hybrid_trains_its_reconstruction_decoder(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from ocsf_detect_tools.training import fit

    made = []

    class RecordingHead(fit.ReconstructionHead):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.initial = [p.detach().clone() for p in self.parameters()]
            made.append(self)

    monkeypatch.setattr(fit, "ReconstructionHead", RecordingHead)
    rng = np.random.default_rng(0)
    numeric = rng.normal(size=(300, 3)).astype(np.float32)
    categorical = rng.integers(0, 4, size=(300, 2))
    config = fit.TrainConfig(method="hybrid", epochs=1, max_steps=10, width=16, dim=8)
    fit.train_embedding(numeric, categorical, [4, 4], config)
    (head,) = made
    changed = [not torch.equal(a, b) for a, b in zip(head.initial, head.parameters(), strict=True)]
    assert any(changed)


def test_a_baseline_flooded_by_one_attack_still_ranks_the_attack_high(
    tmp_path: Path, baseline_traffic, live_traffic
) -> None:
    """Most of the baseline is one implant's beacons (as in captures where the attack is
    the baseline). Indexed event by event, the flood vouches for new beacons; on the
    distinct-behaviour index it counts once and they rank above normal traffic again."""
    from sklearn.metrics import roc_auc_score

    from ocsf_detect_tools.build import build_bundle
    from tests.conftest import small_config

    network = [e for e in baseline_traffic.events if e["class_uid"] == 4001]
    labelled = list(zip(live_traffic.events, live_traffic.labels, strict=True))
    beacons = [e for e, lb in labelled if lb.attack_type == "beaconing"]
    normal = [e for e, lb in labelled if not lb.is_malicious and e["class_uid"] == 4001]
    flood_from, probes = beacons[::2], beacons[1::2]
    assert len(probes) >= 5
    assert len(normal) >= 200
    flood = []
    for i in range(len(network)):
        event = json.loads(json.dumps(flood_from[i % len(flood_from)]))
        event["metadata"]["uid"] = f"flood-{i}"
        flood.append(event)
    lines = [orjson.dumps(e) for e in network + flood]
    index = {"recall_sample": 200, "ef_construction": 100}

    def auc(name: str, **extra: float) -> float:
        scope = "all" if extra.get("distinct_radius") == 0.0 else "covered"
        config = small_config(index={**index, **extra}, isolation={"scope": scope})
        build_bundle(lines, tmp_path / name, config)
        outcomes = Detector.load(tmp_path / name).score_objects(probes + normal)
        scores = [o.score for o in outcomes if isinstance(o, Scored)]
        assert len(scores) == len(probes) + len(normal)
        return float(roc_auc_score([1] * len(probes) + [0] * len(normal), scores))

    every_event = auc("every-event", distinct_radius=0.0)
    distinct_net = auc("distinct")
    assert distinct_net >= 0.9
    assert distinct_net > every_event + 0.2


def test_an_interrupted_build_leaves_the_earlier_bundle_as_it_was(
    tmp_path: Path, bundle_dir: Path, baseline_traffic
) -> None:
    from ocsf_detect_tools.build import build_bundle
    from tests.conftest import small_config

    # Given an earlier bundle in the output directory
    out = Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))
    before = (out / "manifest.json").read_bytes()

    def interrupt(message: str) -> None:
        if "trained" in message:  # after the first model is written
            raise KeyboardInterrupt

    # When a new build into it is interrupted half way
    lines = [orjson.dumps(e) for e in baseline_traffic.events[:1500]]
    with pytest.raises(KeyboardInterrupt):
        build_bundle(lines, out, small_config(), log=interrupt)
    # Then the earlier bundle is intact and loads, and no partial directory is left
    assert (out / "manifest.json").read_bytes() == before
    assert Detector.load(out).bundle_version == read_manifest(bundle_dir).bundle_version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_measured_range_off_builds_the_exponential_tails_of_format_9(
    tmp_path: Path, baseline_traffic
) -> None:
    """``[isolation] measured_range = false``: no measured range in either tail, so the
    surprise follows the exponential tail throughout and the trees judge covered events
    only, as bundles before format 10 score."""
    from ocsf_detect_tools.build import build_bundle
    from tests.conftest import small_config

    network = [e for e in baseline_traffic.events if e["class_uid"] == 4001][:600]
    config = small_config(isolation={"measured_range": False})
    build_bundle([orjson.dumps(e) for e in network], tmp_path / "b", config)
    model = read_manifest(tmp_path / "b").models["4001"]
    assert model.tails is not None
    assert model.tails.knn.measured is None
    assert model.tails.isolation.measured is None
    # and the default keeps it
    assert small_config().isolation.measured_range is True
