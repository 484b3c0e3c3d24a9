"""The synthetic traffic generator: determinism, OCSF shape, labels and attack signals."""

from __future__ import annotations

import gzip
import ipaddress
import itertools
import math
import statistics
from collections import Counter
from typing import Any

import orjson
import pytest

from ocsf_detect_tools.cli import main
from ocsf_detect_tools.cli.generate import default_labels_path
from ocsf_detect_tools.simulate import (
    ATTACK_TYPES,
    DEFAULT_START_MS,
    Traffic,
    build_organisation,
    generate_traffic,
    write_jsonl,
    write_labels_csv,
)

N = 5000
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def live() -> Traffic:
    return generate_traffic(N, seed=7)


@pytest.fixture(scope="module")
def baseline() -> Traffic:
    return generate_traffic(N, seed=1, attacks=False)


def _of_type(traffic: Traffic, attack_type: str) -> list[dict[str, Any]]:
    return [e for e, lb in zip(traffic.events, traffic.labels, strict=True)
            if lb.attack_type == attack_type]  # fmt: skip


def _benign(traffic: Traffic, class_uid: int) -> list[dict[str, Any]]:
    return [e for e, lb in zip(traffic.events, traffic.labels, strict=True)
            if not lb.is_malicious and e["class_uid"] == class_uid]  # fmt: skip


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _is_public(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_global


# --- determinism ---------------------------------------------------------------------------


def test_same_arguments_write_byte_identical_files(tmp_path):
    # Given two runs with the same arguments, written to different gzip paths
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "sub" / "b.jsonl.gz"
    write_jsonl(generate_traffic(1500, seed=11).events, a)
    write_jsonl(generate_traffic(1500, seed=11).events, b)
    # Then the compressed bytes match (no file name or time in the gzip header)
    assert a.read_bytes() == b.read_bytes()
    # And the labels files match too
    write_labels_csv(generate_traffic(1500, seed=11).labels, tmp_path / "a.csv")
    write_labels_csv(generate_traffic(1500, seed=11).labels, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_different_seeds_give_different_traffic():
    a = generate_traffic(500, seed=1)
    b = generate_traffic(500, seed=2)
    assert [orjson.dumps(e) for e in a.events] != [orjson.dumps(e) for e in b.events]
    assert not {lb.uid for lb in a.labels} & {lb.uid for lb in b.labels}


def test_baseline_and_live_describe_the_same_organisation(live, baseline):
    org = build_organisation()
    org_ips = {h.ip for h in org.hosts}
    org_names = {h.hostname for h in org.hosts}

    def internal_hosts(traffic: Traffic) -> tuple[set[str], set[str]]:
        ips, names = set(), set()
        for e in traffic.events:
            for side in ("src_endpoint", "dst_endpoint"):
                ep = e[side]
                if ipaddress.ip_address(ep["ip"]).is_private:
                    ips.add(ep["ip"])
                    if "hostname" in ep:
                        names.add(ep["hostname"])
        return ips, names

    live_ips, live_names = internal_hosts(live)
    base_ips, base_names = internal_hosts(baseline)
    # Every internal address and name comes from the one organisation, in both sets
    assert live_ips <= org_ips
    assert base_ips <= org_ips
    assert live_names <= org_names
    assert base_names <= org_names
    # And both sets cover most of it, so a model trained on one knows the other's hosts
    assert len(live_ips & base_ips) >= 0.9 * len(org_ips)
    # (the traffic seeds differ above; the organisation is keyed by its own seed, built
    # once per seed, and another organisation seed gives other people)
    assert build_organisation(1) is build_organisation(1)
    assert build_organisation(2).users != org.users


# --- shape and labels ---------------------------------------------------------------------


def test_one_label_per_event_in_time_order(live):
    assert len(live.events) == len(live.labels) == N
    uids = [e["metadata"]["uid"] for e in live.events]
    assert len(set(uids)) == N
    assert uids == [lb.uid for lb in live.labels]
    times = [e["time"] for e in live.events]
    assert times == sorted(times)
    assert times[0] >= DEFAULT_START_MS
    assert times[-1] < DEFAULT_START_MS + 7 * DAY_MS
    assert all(lb.is_malicious == int(lb.attack_type != "benign") for lb in live.labels)


def test_every_event_has_the_ocsf_base_fields(live):
    for event in live.events:
        assert isinstance(event["class_uid"], int)
        assert isinstance(event["class_name"], str)
        assert isinstance(event["category_uid"], int)
        assert isinstance(event["category_name"], str)
        assert isinstance(event["activity_id"], int)
        assert isinstance(event["activity_name"], str)
        assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
        assert isinstance(event["severity_id"], int)
        assert type(event["time"]) is int
        meta = event["metadata"]
        assert meta["version"] == "1.3.0"
        assert isinstance(meta["uid"], str)
        assert meta["uid"]
        assert meta["product"]["name"]
        assert meta["product"]["vendor_name"]
        assert meta["log_name"]
        assert event["class_uid"] // 1000 == event["category_uid"]


def test_class_specific_fields(live):
    for e in live.events:
        if e["class_uid"] == 4001:
            assert {"ip", "port"} <= e["src_endpoint"].keys() <= {"ip", "port", "hostname"}
            assert e["connection_info"]["direction_id"] in (1, 2, 3)
            assert e["connection_info"]["protocol_num"] in (6, 17)
            assert set(e["traffic"]) >= {"bytes_in", "bytes_out", "packets_in", "packets_out"}
            assert e["end_time"] - e["start_time"] == e["duration"] >= 0
            assert e["status_code"] in {"SF", "S0", "S1", "REJ", "RSTO", "RSTR", "OTH"}
        elif e["class_uid"] == 4003:
            assert e["query"]["class"] == "IN"
            assert e["query"]["hostname"]
            assert e["dst_endpoint"] == {"ip": "10.10.1.53", "port": 53}
            assert e["connection_info"]["protocol_num"] == 17
            assert (e["rcode_id"], e["rcode"]) in {(0, "NoError"), (2, "ServError"),
                                                   (3, "NXDomain")}  # fmt: skip
            assert all({"rdata", "type", "ttl"} <= a.keys() for a in e["answers"])
        else:
            assert e["class_uid"] == 3002
            assert {"name", "uid", "type_id"} <= e["user"].keys()
            assert (e["status_id"], e["status"]) in {(1, "Success"), (2, "Failure")}
            assert isinstance(e["is_mfa"], bool)
            assert e["service"]["name"]
            assert e["dst_endpoint"]["hostname"]
            assert e["dst_endpoint"]["ip"]


def test_class_mix_and_working_hours(baseline):
    org = build_organisation()
    classes = Counter(e["class_uid"] for e in baseline.events)
    assert classes[4001] / N == pytest.approx(0.55, abs=0.04)
    assert classes[4003] / N == pytest.approx(0.30, abs=0.04)
    assert classes[3002] / N == pytest.approx(0.15, abs=0.03)
    # Most activity falls in weekday working hours, but nights and weekends are not empty
    at_work = sum(org.is_working_hours(e["time"]) for e in baseline.events) / N
    assert 0.7 < at_work < 0.95
    # Benign logon failures are occasional, not absent
    auths = _benign(baseline, 3002)
    failures = sum(e["status_id"] == 2 for e in auths) / len(auths)
    assert 0.005 < failures < 0.06


def test_without_attacks_every_label_is_benign(baseline):
    assert all(lb.is_malicious == 0 and lb.attack_type == "benign" for lb in baseline.labels)
    assert baseline.attack_counts() == {}


def test_every_attack_type_is_present_in_its_share(live):
    counts = live.attack_counts()
    assert set(counts) == set(ATTACK_TYPES)
    total = sum(counts.values())
    assert total == round(N * 0.03)
    assert all(c >= 0.1 * total for c in counts.values())


def test_attack_fraction_and_window_are_honoured():
    traffic = generate_traffic(2000, seed=5, attack_fraction=0.1, start_ms=0, days=1.0)
    assert sum(lb.is_malicious for lb in traffic.labels) == 200
    assert all(0 <= e["time"] < DAY_MS for e in traffic.events)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_events": -1}, {"n_events": 10, "attack_fraction": 1.0}, {"n_events": 10, "days": 0}],
)
def test_invalid_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match="must"):
        generate_traffic(**kwargs)


# --- attacks differ from benign traffic in single events ---------------------------------


def test_exfiltration_sends_far_more_than_benign_flows(live):
    exfil = _of_type(live, "data_exfiltration")
    benign = _benign(live, 4001)
    benign_out = statistics.median(e["traffic"]["bytes_out"] for e in benign)
    assert statistics.median(e["traffic"]["bytes_out"] for e in exfil) > 1000 * benign_out
    assert all(e["traffic"]["bytes_out"] >= 50_000_000 for e in exfil)
    assert all(e["traffic"]["bytes_out"] > 100 * e["traffic"]["bytes_in"] for e in exfil)
    assert all(_is_public(e["dst_endpoint"]["ip"]) for e in exfil)
    benign_dsts = {e["dst_endpoint"]["ip"] for e in benign}
    assert not {e["dst_endpoint"]["ip"] for e in exfil} & benign_dsts


def test_port_scan_probes_are_empty_and_spread_over_ports(live):
    scans = _of_type(live, "port_scan")
    assert all(e["traffic"]["bytes_in"] == e["traffic"]["bytes_out"] == 0 for e in scans)
    assert all(e["traffic"]["packets_out"] <= 2 and e["duration"] <= 2 for e in scans)
    assert Counter(e["status_code"] for e in scans).most_common(1)[0][0] in ("S0", "REJ")
    assert len({e["dst_endpoint"]["port"] for e in scans}) > 0.8 * len(scans)
    benign_ports = Counter(e["dst_endpoint"]["port"] for e in _benign(live, 4001))
    assert len(benign_ports) < 40  # normal traffic uses a handful of service ports


def test_brute_force_is_failed_password_guessing_without_mfa(live):
    guesses = _of_type(live, "brute_force")
    assert all(e["class_uid"] == 3002 and e["is_mfa"] is False for e in guesses)
    assert sum(e["status_id"] == 2 for e in guesses) >= 0.9 * len(guesses)
    # Password protocols that benign logons never use here: PAP, SSH password, NTLM
    benign_protocols = {(e["auth_protocol_id"], e["auth_protocol"]) for e in _benign(live, 3002)}
    attack_protocols = {(e["auth_protocol_id"], e["auth_protocol"]) for e in guesses}
    assert attack_protocols - benign_protocols


def test_beacons_are_regular_small_and_go_to_an_unusual_port(live):
    beacons = _of_type(live, "beaconing")
    assert {e["dst_endpoint"]["port"] for e in beacons} <= {8443, 4444, 1337, 9001, 50050, 31337}
    assert all(e["traffic"]["bytes_out"] < 600 for e in beacons)
    assert not {e["dst_endpoint"]["ip"] for e in beacons} & {
        e["dst_endpoint"]["ip"] for e in _benign(live, 4001)
    }
    # Within one channel (same source and destination): steady interval, near-constant size
    channels: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in beacons:
        channels.setdefault((e["src_endpoint"]["ip"], e["dst_endpoint"]["ip"]), []).append(e)
    assert any(len(calls) >= 4 for calls in channels.values())
    for calls in channels.values():
        if len(calls) < 4:
            continue
        gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(calls)]
        assert statistics.pstdev(gaps) < 0.25 * statistics.mean(gaps)
        assert statistics.pstdev(e["traffic"]["bytes_out"] for e in calls) < 10


def test_dns_tunnelling_names_are_long_and_random(live):
    tunnel = _of_type(live, "dns_tunnelling")
    benign_names = sorted(len(e["query"]["hostname"]) for e in _benign(live, 4003))
    p99 = benign_names[int(0.99 * len(benign_names))]
    assert min(len(e["query"]["hostname"]) for e in tunnel) > max(p99, 80)
    assert all(len(e["query"]["hostname"]) <= 253 for e in tunnel)
    assert all(e["query"]["type"] in ("TXT", "CNAME", "NULL") for e in tunnel)
    tunnel_entropy = statistics.median(_entropy(e["query"]["hostname"]) for e in tunnel)
    benign_entropy = statistics.median(_entropy(e["query"]["hostname"]) for e in
                                       _benign(live, 4003))  # fmt: skip
    assert tunnel_entropy > benign_entropy + 0.5


# --- command line --------------------------------------------------------------------------


def test_generate_command_writes_events_and_labels(tmp_path, capsys):
    # Given an output path ending in .jsonl.gz
    out = tmp_path / "x.jsonl.gz"
    # When the command runs
    assert main(["generate", "--out", str(out), "--events", "2000"]) == 0
    # Then the events are gzip JSONL, one per line
    lines = gzip.decompress(out.read_bytes()).splitlines()
    assert len(lines) == 2000
    events = [orjson.loads(line) for line in lines]
    # And the labels sit next to them, one row per event, in the same order
    rows = (tmp_path / "x.labels.csv").read_text().splitlines()
    assert rows[0] == "uid,is_malicious,attack_type"
    assert [r.split(",")[0] for r in rows[1:]] == [e["metadata"]["uid"] for e in events]
    assert sum(r.split(",")[1] == "1" for r in rows[1:]) == 60
    # And one summary line names the counts and both paths
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1
    assert "wrote 2000 events" in summary[0]
    assert "malicious 60" in summary[0]
    assert str(out) in summary[0]
    assert "x.labels.csv" in summary[0]


def test_generate_command_without_attacks_and_explicit_labels(tmp_path):
    out, labels = tmp_path / "base.jsonl", tmp_path / "truth.csv"
    assert main(["generate", "--out", str(out), "--events", "300", "--seed", "3",
                 "--labels", str(labels), "--no-attacks"]) == 0  # fmt: skip
    assert len(out.read_bytes().splitlines()) == 300
    assert all(r.endswith(",0,benign") for r in labels.read_text().splitlines()[1:])


def test_generate_command_rejects_a_negative_count(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "x.jsonl"), "--events", "-5"]) == 2
    assert "--events" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("out", "expected"),
    [("d/x.jsonl.gz", "d/x.labels.csv"), ("d/x.jsonl", "d/x.labels.csv"),
     ("x.ndjson", "x.labels.csv")],
)  # fmt: skip
def test_default_labels_path(out, expected, tmp_path):
    assert default_labels_path(tmp_path / out) == tmp_path / expected
