"""Every class a user streams gets a model: curated specs, derived specs, and the reason
a class too small for one stays unsupported."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from ocsf_detect.detector.scorer import Detector, Scored, outcome_dict
from ocsf_detect.features.pipeline import FeaturePipeline, fit_spec
from ocsf_detect.features.spec import (
    AddressFeature,
    CategoricalFeature,
    CountFeature,
    HashedFeature,
    HourFeature,
    NumericFeature,
    TextFeature,
)
from ocsf_detect.ocsf import EventParser, Parsed, Unsupported, UnsupportedReason
from ocsf_detect_tools.build import build_bundle
from ocsf_detect_tools.cli import main
from ocsf_detect_tools.cli.score import outcome_record
from ocsf_detect_tools.config import DetectorConfig
from ocsf_detect_tools.derived_specs import DeriveSettings, derive_spec
from ocsf_detect_tools.schema import OcsfSchema
from ocsf_detect_tools.simulate import generate_traffic
from ocsf_detect_tools.specs import default_specs

T0 = 1_772_409_600_000  # 2026-03-02T00:00Z
HOUR = 3_600_000


# -- real-shaped fixtures of classes without a curated spec --------------------------------
def dhcp_event(rng: random.Random, i: int) -> dict[str, Any]:
    """DHCP Activity (4004) as a Zeek dhcp log maps to it."""
    host = rng.randrange(20, 60)
    return {
        "class_uid": 4004,
        "category_uid": 4,
        "activity_id": rng.choice((1, 2, 5)),
        "type_uid": 400401,
        "time": T0 + i * 60_000 + rng.randrange(60_000),
        "severity_id": 1,
        "metadata": {"uid": f"dhcp-{i}", "version": "1.3.0", "product": {"name": "Zeek"}},
        "src_endpoint": {"ip": f"10.20.0.{host}", "mac": f"00:1a:2b:3c:4d:{host:02x}"},
        "dst_endpoint": {"ip": "10.20.0.1", "port": 67},
        "lease_dur": rng.choice((3600, 7200, 86400)),
        "is_renewal": rng.random() < 0.7,
        "connection_info": {"protocol_name": "udp", "direction_id": 3},
    }


def user_access_event(rng: random.Random, i: int) -> dict[str, Any]:
    """User Access Management (3005) as CloudTrail's IAM calls map to it."""
    admin = rng.choice(("alice", "bob"))
    return {
        "class_uid": 3005,
        "category_uid": 3,
        "activity_id": rng.choice((1, 2)),
        "type_uid": 300501,
        "time": T0 + i * 90_000,
        "severity_id": 1,
        "metadata": {"uid": f"uam-{i}", "version": "1.1.0", "product": {"name": "CloudTrail"}},
        "actor": {"user": {"name": admin, "type": "IAMUser"}},
        "user": {"name": f"user{rng.randrange(40)}", "type_id": 1},
        "privileges": [rng.choice(("s3:GetObject", "ec2:Describe*", "iam:PassRole"))],
        "api": {"operation": rng.choice(("AttachUserPolicy", "PutUserPolicy"))},
        "src_endpoint": {"ip": f"203.0.113.{rng.randrange(1, 5)}"},
        "http_request": {"user_agent": "aws-cli/2.15.0"},
        "cloud": {"provider": "AWS", "region": "us-east-1"},
    }


def api_event(rng: random.Random, i: int) -> dict[str, Any]:
    """API Activity (6003), the curated class the generator does not make."""
    return {
        "class_uid": 6003,
        "category_uid": 6,
        "activity_id": 2,
        "type_uid": 600302,
        "time": T0 + i * 45_000,
        "metadata": {"uid": f"api-{i}", "version": "1.1.0", "product": {"name": "CloudTrail"}},
        "api": {
            "operation": rng.choice(("GetObject", "ListBuckets", "DescribeInstances")),
            "service": {"name": rng.choice(("s3.amazonaws.com", "ec2.amazonaws.com"))},
        },
        "actor": {"user": {"name": rng.choice(("ci", "alice")), "type": "IAMUser"}},
        "src_endpoint": {"ip": f"198.51.100.{rng.randrange(1, 4)}"},
        "cloud": {"region": "eu-west-1"},
        "status_id": 1,
    }


# -- the schema ----------------------------------------------------------------------------
def test_schema_types_paths_of_a_class():
    schema = OcsfSchema.load()
    cmd = schema.attribute(1007, "process.cmd_line")
    ip = schema.attribute(4002, "src_endpoint.ip")
    kind = schema.attribute(3002, "user.type_id")  # the user object's own enum
    method = schema.attribute(4002, "http_request.http_method")
    assert (cmd.type, cmd.enum) == ("string_t", None) if cmd else cmd
    assert ip.type == "ip_t" if ip else ip
    assert "2" in (kind.enum or ()) if kind else kind
    assert "POST" in (method.enum or ()) if method else method
    assert schema.attribute(4002, "http_request.no_such_field") is None
    assert schema.attribute(999_999, "time") is None


# -- derivation ----------------------------------------------------------------------------
def test_derived_spec_types_attributes_from_schema_and_values():
    rng = random.Random(1)
    events = [user_access_event(rng, i) for i in range(300)]
    derived = derive_spec(3005, events)
    kinds = {f.name: f for f in derived.spec.features}
    assert derived.schema_version == "1.7.0"
    assert isinstance(kinds["hour"], HourFeature)
    assert isinstance(kinds["activity_id"], CategoricalFeature)  # an enum
    assert isinstance(kinds["actor.user.name"], HashedFeature)  # an identifier, even of two
    assert isinstance(kinds["src_endpoint.ip"], HashedFeature)
    assert isinstance(kinds["src_endpoint.ip:scope"], AddressFeature)
    assert isinstance(kinds["http_request.user_agent:shape"], TextFeature)
    assert isinstance(kinds["privileges:count"], CountFeature)
    assert isinstance(kinds["cloud.region"], CategoricalFeature)  # one value: a category
    pair = kinds["actor_target"]
    assert isinstance(pair, HashedFeature)
    assert (pair.path, pair.together_with) == ("actor.user.name", "user.name")
    # Identity and metadata of the event itself are no features.
    assert not any(f.path.startswith("metadata") or f.path == "type_uid" for f in kinds.values())


def test_derived_spec_without_the_schema_reads_the_values():
    rng = random.Random(2)
    events = [dhcp_event(rng, i) for i in range(300)]
    derived = derive_spec(4004, events, DeriveSettings(schema_version=None))
    kinds = {f.name: f for f in derived.spec.features}
    assert derived.schema_version is None
    assert isinstance(kinds["lease_dur"], CategoricalFeature)  # three integer values
    assert isinstance(kinds["is_renewal"], CategoricalFeature)
    assert isinstance(kinds["src_endpoint.mac"], CategoricalFeature | HashedFeature)
    # A time field other than the event's own is drift, not behaviour: left out.
    times = [{**e, "end_time": e["time"] + 5} for e in events]
    assert "end_time" not in {f.path for f in derive_spec(4004, times).spec.features}


def test_derived_numbers_of_many_values_are_numeric():
    rng = random.Random(3)
    events = [{**dhcp_event(rng, i), "lease_dur": rng.randrange(60, 90_000)} for i in range(300)]
    kinds = {f.name: f for f in derive_spec(4004, events).spec.features}
    assert isinstance(kinds["lease_dur"], NumericFeature)


# -- curated specs on real-shaped events ---------------------------------------------------
@pytest.mark.parametrize("class_uid", [4002, 1007, 3001, 1001])
def test_curated_specs_read_their_class_as_produced(class_uid: int):
    # Given generated events of the class, shaped like the sources' own (see simulate)
    traffic = generate_traffic(3000, seed=5, attacks=True, endpoint=True)
    events = [e for e in traffic.events if e["class_uid"] == class_uid]
    assert len(events) > 50
    spec = default_specs()[class_uid]
    # When the spec is fitted and applied
    times = [e["time"] for e in events]
    fitted = fit_spec(spec, events, np.array(times))
    pipeline = FeaturePipeline(fitted)
    parser = EventParser({class_uid: pipeline.plan})
    parsed = [parser.parse_object(e) for e in events]
    # Then every event parses, and each feature is present in most events
    assert all(isinstance(p, Parsed) for p in parsed)
    matrix = pipeline.transform_parsed([p for p in parsed if isinstance(p, Parsed)])
    assert matrix.numeric.shape[0] == len(events)
    missing = {
        name: float(matrix.numeric[:, j].mean())
        for j, name in enumerate(pipeline.input_names)
        if name.endswith(".missing")
    }
    present = [n for n, share in missing.items() if share < 0.5]
    assert len(present) >= len(missing) // 2, missing


# -- train: ten classes, curated and derived side by side ----------------------------------
def _ten_class_baseline() -> list[bytes]:
    rng = random.Random(9)
    events = generate_traffic(6000, seed=11, attacks=False, endpoint=True).events
    events += [api_event(rng, i) for i in range(120)]
    events += [dhcp_event(rng, i) for i in range(260)]
    events += [user_access_event(rng, i) for i in range(240)]
    events += [{**dhcp_event(rng, i), "class_uid": 4007} for i in range(30)]  # too few
    return [orjson.dumps(e) for e in events]


FAST = {
    "min_class_events": 50,
    "min_derived_events": 200,
    "holdout": 0.2,
    "train": {"max_steps": 8, "epochs": 1, "width": 16, "dim": 8, "blocks": 1},
    # a quick index: no contamination screen (another index), the first ef that is tried
    "index": {
        "recall_sample": 50,
        "ef_construction": 32,
        "M": 8,
        "contamination": 0.0,
        "recall_target": 0.5,
    },
}


def test_train_on_ten_classes_builds_ten_models_and_scores_them(tmp_path: Path):
    # Given a baseline of ten classes with 120+ events each, three without a curated
    # spec (two with enough events for a derived one) and one too small
    lines = _ten_class_baseline()
    config = DetectorConfig.model_validate(FAST)
    # When train builds the bundle
    manifest = build_bundle(lines, tmp_path / "b", config)
    # Then every class with enough events has a model: eight curated, two derived
    origins = {int(k): m.spec_origin for k, m in manifest.models.items()}
    assert origins == {
        4001: "curated", 4003: "curated", 3002: "curated", 6003: "curated",
        4002: "curated", 1007: "curated", 3001: "curated", 1001: "curated",
        4004: "derived", 3005: "derived",
    }  # fmt: skip
    # And the small class is named with its reason and count
    small = manifest.training.unmodelled["4007"]
    assert small.reason is UnsupportedReason.TOO_FEW_BASELINE_EVENTS
    assert (small.baseline_events, small.minimum) == (30, 200)
    # When the bundle scores one event of each class
    detector = Detector.load(tmp_path / "b")
    firsts: dict[int, bytes] = {}
    for line in lines:
        firsts.setdefault(orjson.loads(line)["class_uid"], line)
    outcomes = detector.score_batch(list(firsts.values()))
    by_class = dict(zip(firsts, outcomes, strict=True))
    # Then all ten are scored, and the small class says why it is not
    assert sorted(c for c, o in by_class.items() if isinstance(o, Scored)) == sorted(origins)
    small_outcome = by_class[4007]
    assert isinstance(small_outcome, Unsupported)
    assert outcome_dict(small_outcome) == {
        "status": "unsupported",
        "class_uid": 4007,
        "class_name": "SSH Activity",
        "reason": "too_few_baseline_events",
        "baseline_events": 30,
    }
    record = outcome_record(detector, 1, small_outcome)  # what `score` writes
    assert record["reason"] == "too_few_baseline_events"
    assert "held 30 of its events, a model needs 200" in record["message"]


def test_derivation_can_be_turned_off(tmp_path: Path):
    rng = random.Random(4)
    lines = [orjson.dumps(api_event(rng, i)) for i in range(120)]
    lines += [orjson.dumps(dhcp_event(rng, i)) for i in range(220)]
    config = DetectorConfig.model_validate({**FAST, "derive_specs": False})
    manifest = build_bundle(lines, tmp_path / "b", config)
    assert manifest.classes == [6003]
    assert manifest.training.unmodelled == {}
    counts = Counter(manifest.training.events_per_class)
    assert "4004" not in counts


def test_train_and_inspect_name_each_spec_and_the_classes_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # Given a baseline of one class without a curated spec and one with too few events
    rng = random.Random(6)
    events = [dhcp_event(rng, i) for i in range(220)]
    events += [{**dhcp_event(rng, i), "class_uid": 4007} for i in range(25)]
    baseline = tmp_path / "base.jsonl"
    baseline.write_bytes(b"\n".join(orjson.dumps(e) for e in events))
    config = tmp_path / "detector.toml"
    config.write_text(
        "min_derived_events = 200\n[train]\nmax_steps = 8\nepochs = 1\nwidth = 16\ndim = 8\n"
        "blocks = 1\n[index]\nrecall_sample = 50\nef_construction = 32\nM = 8\n"
    )
    # When train builds a bundle and inspect reads it
    bundle = tmp_path / "bundle"
    assert main(["train", "--events", str(baseline), "--out", str(bundle),
                 "--config", str(config)]) == 0  # fmt: skip
    trained = capsys.readouterr().out
    assert main(["inspect", str(bundle)]) == 0
    inspected = capsys.readouterr().out
    # Then both say which spec the model has and why the small class has none
    assert "class 4004 DHCP Activity: " in trained
    assert "derived spec" in trained
    assert (
        "class 4007 SSH Activity: unsupported, too_few_baseline_events "
        "(25 baseline events, a model needs 200)" in trained
    )
    assert "spec: derived, baseline 220 events" in inspected
    assert "lease_dur" in inspected  # the features are listed
    assert "class 4007 SSH Activity: unsupported (too_few_baseline_events" in inspected
