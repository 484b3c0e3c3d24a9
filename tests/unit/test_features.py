"""Feature specs and pipelines: declarative, fitted on training data, reproducible."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocsf_detect.features.pipeline import FeatureError, FeatureMatrix, FeaturePipeline, fit_spec
from ocsf_detect.features.spec import ClassSpec
from ocsf_detect.ocsf import EventParser, Parsed
from ocsf_detect_tools.config import ConfigError, DetectorConfig, load_config
from ocsf_detect_tools.specs import default_specs
from tests.conftest import EVENTS_DIR

BASE = json.loads((EVENTS_DIR / "ocsf" / "network_activity.json").read_text())


def make_events(n: int, seed: int = 0) -> list[dict]:
    """Small, varied Network Activity fixtures derived from the sample event."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        e = json.loads(json.dumps(BASE))
        e["time"] = 1741939200000 + int(rng.integers(0, 86_400_000))
        e["metadata"]["uid"] = f"fx-{seed}-{i}"
        e["dst_endpoint"]["port"] = int(rng.choice([443, 443, 80, 53, 8080]))
        e["dst_endpoint"]["ip"] = f"93.184.{rng.integers(0, 4)}.{rng.integers(1, 250)}"
        e["traffic"]["bytes_out"] = int(rng.lognormal(7, 1))
        e["traffic"]["bytes_in"] = int(rng.lognormal(10, 1))
        e["unmapped"]["orig_ip_bytes"] = int(rng.integers(100, 5000))
        if i % 10 == 0:
            del e["unmapped"]["resp_ip_bytes"]  # present in 90% of events
        if i % 3 == 0:
            e["unmapped"]["rare"] = 1  # present in a third
        events.append(e)
    return events


def fitted(events: list[dict], spec: ClassSpec | None = None) -> ClassSpec:
    spec = spec or default_specs()[4001]
    return fit_spec(spec, events, np.array([e["time"] for e in events]))


def parsed(spec: ClassSpec, events: list[dict]) -> list[Parsed]:
    pipeline = FeaturePipeline(spec)
    out = EventParser({4001: pipeline.plan}).parse_many(orjson.dumps(e) for e in events)
    assert all(isinstance(o, Parsed) for o in out)
    return out  # type: ignore[return-value]


def test_fitted_spec_round_trips_through_json_to_the_same_matrix() -> None:
    events = make_events(300)
    spec = fitted(events)
    again = ClassSpec.model_validate_json(spec.model_dump_json())
    a = FeaturePipeline(spec).transform_parsed(parsed(spec, events))
    b = FeaturePipeline(again).transform_parsed(parsed(again, events))
    assert np.array_equal(a.numeric, b.numeric)
    assert np.array_equal(a.categorical, b.categorical)
    assert a.numeric.dtype == np.float32
    assert a.categorical.dtype == np.int64


def test_unmapped_fields_in_most_events_are_included_automatically() -> None:
    spec = fitted(make_events(300))
    assert spec.unmapped.selected == ["orig_ip_bytes", "resp_ip_bytes"]
    assert "unmapped.orig_ip_bytes" in FeaturePipeline(spec).numeric_names


def test_config_names_and_excludes_unmapped_fields(tmp_path) -> None:
    config = tmp_path / "detector.toml"
    config.write_text(
        '[classes.4001]\ndrop = ["dst_host"]\n'
        'add = [{ kind = "numeric", name = "flags", path = "connection_info.tcp_flags" }]\n'
        '[classes.4001.unmapped]\ninclude = ["rare"]\nexclude = ["resp_ip_bytes"]\n'
    )
    spec = load_config(config).class_specs()[4001]
    fit = fitted(make_events(200), spec)
    assert fit.unmapped.selected == ["orig_ip_bytes", "rare"]
    names = [f.name for f in fit.features]
    assert "dst_host" not in names
    assert "flags" in names


def test_bad_config_names_the_setting(tmp_path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[classes.4001]\ndrop = ["nope"]\n')
    with pytest.raises(ConfigError, match=r"classes\.4001\.drop.*nope"):
        load_config(config)
    config.write_text("alert_rate = 2\n")
    with pytest.raises(ConfigError, match="alert_rate"):
        load_config(config)


def test_missing_values_become_zero_with_an_indicator() -> None:
    events = make_events(200)
    spec = fitted(events)
    pipeline = FeaturePipeline(spec)
    sparse = {"class_uid": 4001, "time": 1741939200000}
    m = pipeline.transform_parsed(parsed(spec, [sparse]))
    names = pipeline.input_names
    assert m.numeric[0, names.index("bytes_in")] == 0.0
    assert m.numeric[0, names.index("bytes_in.missing")] == 1.0
    assert (m.categorical[0, pipeline.categorical_names.index("dst_port")]) == 0  # missing


def test_vocabulary_has_an_out_of_vocabulary_bucket() -> None:
    events = make_events(200)
    spec = fitted(events)
    pipeline = FeaturePipeline(spec)
    odd = json.loads(json.dumps(events[0]))
    odd["dst_endpoint"]["port"] = 31337
    m = pipeline.transform_parsed(parsed(spec, [events[0], odd]))
    col = pipeline.categorical_names.index("dst_port")
    assert m.categorical[0, col] >= 2
    assert m.categorical[1, col] == 1


def test_derived_features_hour_port_class_scope_ratio() -> None:
    events = make_events(200)
    spec = fitted(events)
    pipeline = FeaturePipeline(spec)
    rows = parsed(spec, events[:1])
    raw, cat = pipeline.raw([r.values for r in rows], np.array([r.time_ms for r in rows]))
    names = pipeline.numeric_names
    hour = (events[0]["time"] / 3_600_000) % 24
    assert raw[0, names.index("hour.sin")] == pytest.approx(np.sin(hour * 2 * np.pi / 24))
    share = events[0]["traffic"]["bytes_out"] / (
        events[0]["traffic"]["bytes_out"] + events[0]["traffic"]["bytes_in"]
    )
    assert raw[0, names.index("bytes_out_share")] == pytest.approx(share)
    cats = pipeline.categorical_names
    assert cat[0, cats.index("dst_scope")] == 2  # public (index 1) + 1
    assert cat[0, cats.index("src_scope")] == 1  # private
    assert cat[0, cats.index("dst_port_class")] == 1  # well-known


def test_rarity_of_hashed_values() -> None:
    events = make_events(300)
    spec = fitted(events)
    pipeline = FeaturePipeline(spec)
    new = json.loads(json.dumps(events[0]))
    new["dst_endpoint"]["ip"] = "198.51.100.99"  # never seen in training
    raw, cat = pipeline.raw([p.values for p in parsed(spec, [events[0], new])], np.array([0, 0]))
    col = pipeline.numeric_names.index("dst_ip.rarity")
    assert raw[0, col] > 0
    assert raw[1, col] == 0
    assert cat[1, pipeline.categorical_names.index("dst_ip")] == 1  # unseen bucket


def test_novel_amount_weighs_the_scaled_volume_by_the_destination_novelty() -> None:
    # Given a spec fitted on traffic to a handful of addresses
    events = make_events(300)
    spec = fitted(events)
    pipeline = FeaturePipeline(spec)
    names = pipeline.numeric_names
    known = json.loads(json.dumps(events[0]))
    new = json.loads(json.dumps(events[0]))
    new["dst_endpoint"]["ip"] = "198.51.100.99"  # never seen in training
    gone = json.loads(json.dumps(events[0]))
    del gone["dst_endpoint"]["ip"]
    for e in (known, new, gone):
        e["traffic"]["bytes_out"] = 500_000_000  # far beyond the training uploads
    # When the same upload goes to a known, a new and an absent destination
    m = pipeline.transform_parsed(parsed(spec, [known, new, gone]))
    raw, _ = pipeline.raw([p.values for p in parsed(spec, [known])], np.array([0]))
    col, volume = names.index("bytes_out_new_dst"), names.index("bytes_out")
    count = np.expm1(raw[0, names.index("dst_ip.rarity")])
    indicator = pipeline.input_names.index("bytes_out_new_dst.missing")
    # Then it is the scaled volume itself for the new destination, divided by 1 + the
    # training count for the known one, and missing (0, indicator 1) without a destination
    assert m.numeric[1, col] == pytest.approx(m.numeric[1, volume])
    assert m.numeric[1, col] > 5
    assert count >= 1
    assert m.numeric[0, col] == pytest.approx(m.numeric[0, volume] / (1 + count), rel=1e-5)
    assert m.numeric[2, col] == 0.0
    assert m.numeric[2, indicator] == 1.0
    assert m.numeric[1, indicator] == 0.0
    # and training is told which column it is (its corruption spans the clip range)
    assert pipeline.novel_columns == (col,)


def test_novel_amount_must_name_a_hashed_feature() -> None:
    spec = default_specs()[4001].model_dump()
    spec["features"] = [f for f in spec["features"] if f["name"] != "dst_ip"]
    with pytest.raises(ValueError, match="'of' must name a hashed feature of this class"):
        ClassSpec.model_validate(spec)
    with pytest.raises(ConfigError, match="'of' must name a hashed feature"):
        DetectorConfig.model_validate({"classes": {4001: {"drop": ["dst_ip"]}}}).class_specs()


def test_transform_before_fit_is_an_error() -> None:
    pipeline = FeaturePipeline(default_specs()[4001])
    with pytest.raises(FeatureError, match="not fitted"):
        pipeline.transform([], np.array([]))


def test_every_supported_class_has_defaults_that_fit() -> None:
    assert set(default_specs()) == {4001, 4003, 3002, 6003, 4002, 1007, 3001, 1001}
    for spec in DetectorConfig().class_specs().values():
        pipeline = FeaturePipeline(spec)
        assert pipeline.plan.paths, spec.class_uid


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "dst_endpoint": st.fixed_dictionaries(
                    {},
                    optional={
                        "port": st.integers(-5, 70000) | st.text(max_size=5),
                        "ip": st.text(max_size=20) | st.integers(),
                    },
                ),
                "traffic": st.fixed_dictionaries(
                    {},
                    optional={
                        "bytes_in": st.floats(allow_nan=False, allow_infinity=False)
                        | st.integers(-(2**63), 2**63 - 1),
                        "bytes_out": st.integers(0, 2**40),
                    },
                ),
                "status_code": st.text(max_size=5) | st.integers() | st.booleans(),
            },
        ),
        min_size=1,
        max_size=20,
    )
)
def test_feature_extraction_never_raises_on_what_the_parser_accepts(items: list[dict]) -> None:
    spec = SPEC_FOR_FUZZ
    pipeline = FeaturePipeline(spec)
    parser = EventParser({4001: pipeline.plan})
    outcomes = parser.parse_many(
        json.dumps({"class_uid": 4001, "time": 1741939200000, **item}) for item in items
    )
    ok = [o for o in outcomes if isinstance(o, Parsed)]
    assert all(o.status in {"parsed", "rejected"} for o in outcomes)
    m = pipeline.transform_parsed(ok)
    assert m.numeric.shape == (len(ok), pipeline.n_numeric)
    assert np.isfinite(m.numeric).all()


SPEC_FOR_FUZZ = fitted(make_events(100))


def test_pair_rarity_flags_a_new_relationship_between_known_values() -> None:
    from ocsf_detect.features.spec import HashedFeature

    # Given training where host A only uses ports 443/80 and host B only 53/8080
    events = make_events(300)
    for e in events:
        a_side = e["dst_endpoint"]["port"] in (443, 80)
        e["src_endpoint"]["ip"] = "10.10.3.1" if a_side else "10.10.3.2"
    base = default_specs()[4001]
    pair = HashedFeature(
        name="src_dst_port", path="src_endpoint.ip", together_with="dst_endpoint.port"
    )
    spec = fitted(events, base.model_copy(update={"features": [*base.features, pair]}))
    pipeline = FeaturePipeline(spec)
    # When A uses port 53: both values are known, the pair is not
    known = json.loads(json.dumps(events[0]))
    known["src_endpoint"]["ip"], known["dst_endpoint"]["port"] = "10.10.3.1", 443
    new_pair = json.loads(json.dumps(known))
    new_pair["dst_endpoint"]["port"] = 53
    raw, _ = pipeline.raw([p.values for p in parsed(spec, [known, new_pair])], np.array([0, 0]))
    names = pipeline.numeric_names
    # Then only the pair's rarity tells them apart
    assert raw[1, names.index("src_ip.rarity")] > 0
    assert raw[0, names.index("src_dst_port.rarity")] > 0
    assert raw[1, names.index("src_dst_port.rarity")] == 0


def test_hours_the_baseline_never_saw_are_not_outliers() -> None:
    # Given a baseline of two hours of one morning (09:00-11:00 UTC)
    events = make_events(300)
    start = 1741939200000 + 9 * 3_600_000
    for i, e in enumerate(events):
        e["time"] = start + i * 24_000
    spec = fitted(events)
    pipeline = FeaturePipeline(spec)
    # Then the hour's sin and cos keep the unit circle's scale
    stats = spec.numeric_stats or []
    hours = [stats[j] for j in pipeline.hour_columns]
    assert [(h.center, h.scale) for h in hours] == [(0.0, 1.0), (0.0, 1.0)]
    # And an event six hours later moves them by at most the circle's diameter (fitted to
    # the two hours, the scale would have pushed them to the clip)
    later = dict(events[0], time=start + 6 * 3_600_000)
    matrix = pipeline.transform_parsed(parsed(spec, [events[0], later]))
    hour = matrix.numeric[:, pipeline.hour_columns]
    moved = np.abs(hour[1] - hour[0])
    assert 0.5 < moved.max() <= 2.0


def test_dense_is_numerics_plus_weighted_one_hots() -> None:
    matrix = FeatureMatrix(
        numeric=np.array([[0.5], [-1.0], [2.0]], dtype=np.float32),
        categorical=np.array([[0, 2], [1, 0], [2, 1]], dtype=np.int64),
    )
    plain = matrix.dense([3, 3])
    assert plain.tolist() == [
        [0.5, 1, 0, 0, 0, 0, 1],
        [-1.0, 0, 1, 0, 1, 0, 0],
        [2.0, 0, 0, 1, 0, 1, 0],
    ]
    weighted = matrix.take(np.array([2, 0])).dense([3, 3], category_weight=4.0)
    assert weighted.tolist() == [[2.0, 0, 0, 4, 0, 4, 0], [0.5, 4, 0, 0, 0, 0, 4]]
    # novel-amount columns carry their own weight; the matrix itself is left as it was
    novel = matrix.dense([3, 3], category_weight=4.0, novel=((0,), 2.0))
    assert novel[:, 0].tolist() == [1.0, -2.0, 4.0]
    assert matrix.numeric[:, 0].tolist() == [0.5, -1.0, 2.0]


def test_an_unmapped_field_that_is_sometimes_text_is_missing_there_not_a_rejection() -> None:
    # Given a producer's own field: a number in most events, text or an object in others
    events = make_events(300)
    for i, e in enumerate(events):
        if i % 4 == 0:
            e["unmapped"]["orig_ip_bytes"] = "n/a" if i % 8 == 0 else {"v": 1}
    spec = fitted(events)
    assert "orig_ip_bytes" in spec.unmapped.selected
    # When the fitted plan reads them, Then every event parses and the text is missing
    outcomes = parsed(spec, events)
    pipeline = FeaturePipeline(spec)
    raw, _ = pipeline.raw([p.values for p in outcomes], np.zeros(len(outcomes)))
    col = pipeline.numeric_names.index("unmapped.orig_ip_bytes")
    assert np.isnan(raw[::4, col]).all()
    assert not np.isnan(raw[1::4, col]).any()


def test_hashed_codes_do_not_depend_on_which_equal_value_came_first() -> None:
    # Given a model fitted where a producer wrote an address field as the number 1.0
    events = make_events(300)
    for e in events[:50]:
        e["dst_endpoint"]["ip"] = 1.0
    spec = fitted(events)
    as_int = json.loads(json.dumps(events[0]))
    as_int["dst_endpoint"]["ip"] = 1  # equal to 1.0 in Python, another value to the hash
    codes = {}
    for order in ((events[0], as_int), (as_int, events[0])):
        # When a fresh pipeline meets them in either order, in two batches
        pipeline = FeaturePipeline(spec)
        col = pipeline.categorical_names.index("dst_ip")
        for event in order:
            _, cat = pipeline.raw([p.values for p in parsed(spec, [event])], np.zeros(1))
            kind = type(event["dst_endpoint"]["ip"]).__name__
            codes.setdefault(kind, set()).add(int(cat[0, col]))
    # Then each value gets the same code both times: 1.0 its seen bucket, 1 unseen
    assert codes["float"] != {1}
    assert codes["int"] == {1}
    assert len(codes["float"]) == 1
