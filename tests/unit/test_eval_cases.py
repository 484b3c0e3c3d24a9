"""The evaluation's case builders (benchmarks/cases.py) on small in-memory captures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import cases as c

HOST_DEVICE = "192.168.100.103"
SOURCE_DEVICE = "192.168.1.199"


def flow(
    uid: str,
    t: int,
    *,
    src: str = HOST_DEVICE,
    dst: str = "8.8.8.8",
    port: int = 53,
    bytes_in: int = 100,
) -> dict[str, Any]:
    return {
        "class_uid": 4001,
        "activity_id": 6,
        "time": t,
        "start_time": t,
        "end_time": t + 500,
        "duration": 500,
        "metadata": {"uid": uid},
        "src_endpoint": {"ip": src, "port": 40000},
        "dst_endpoint": {"ip": dst, "port": port},
        "connection_info": {"protocol_name": "udp"},
        "traffic": {
            "bytes_out": 60,
            "bytes_in": bytes_in,
            "bytes": 60 + bytes_in,
            "packets_out": 1,
            "packets_in": 1,
            "packets": 2,
        },
        "unmapped": {"orig_ip_bytes": 88, "resp_ip_bytes": bytes_in + 28},
    }


def host_capture(n: int = 40) -> list[dict[str, Any]]:
    return [flow(f"h{i}", 1_000_000 + 60_000 * i) for i in range(n)]


def download() -> dict[str, Any]:
    e = flow("a1", 5_000, src=SOURCE_DEVICE, dst="46.101.251.172", port=80, bytes_in=171_750)
    e["end_time"] = 5_000 + 1687
    e["duration"] = 1687
    e["traffic"]["packets_out"], e["traffic"]["packets_in"] = 122, 122
    e["traffic"]["packets"] = 244
    return e


def uids(lines: list[bytes]) -> list[str]:
    return [c.uid_of_line(x) for x in lines]


def test_future_split_is_disjoint_and_ordered_in_time() -> None:
    events = host_capture(41)[::-1]  # given out of time order
    labels = {c.uid_of(e): 0 for e in events}
    case = c.future_case("x", events, labels)
    train, test = set(uids(case.train)), set(uids(case.test))
    assert not train & test
    assert train | test == set(labels)
    latest_train = max(orjson.loads(x)["time"] for x in case.train)
    assert all(orjson.loads(x)["time"] >= latest_train for x in case.test)
    assert case.benign_only
    assert set(case.labels) == test


def test_contaminated_trains_on_what_it_scores() -> None:
    events = host_capture(10)
    labels = {c.uid_of(e): int(i == 3) for i, e in enumerate(events)}
    case = c.contaminated_case("x", events, labels)
    assert case.train == case.test
    assert case.labels == labels
    assert case.n_malicious == 1


@pytest.mark.parametrize("copies", [1, 5, 20])
def test_injected_cluster_sizes_and_labels(copies: int) -> None:
    host = host_capture()
    future, contaminated = c.injection_cases(
        f"inject-{copies}", host, [download()], copies, source_device=SOURCE_DEVICE
    )
    # Given the host's 40 benign flows and one attack flow copied `copies` times
    # Then the contaminated case trains on all of them and scores all of them
    assert len(contaminated.train) == len(host) + copies
    assert contaminated.n_malicious == copies
    assert sorted(contaminated.labels) == sorted(uids(contaminated.test))
    # And the future case holds the attacks in its later half only
    assert future.n_malicious == copies
    assert not any(u.startswith("inj-") for u in uids(future.train))
    assert not set(uids(future.train)) & set(uids(future.test))
    start_of_later = min(
        orjson.loads(x)["time"] for x in future.test if not c.uid_of_line(x).startswith("inj-")
    )
    injected = [orjson.loads(x) for x in future.test if c.uid_of_line(x).startswith("inj-")]
    assert all(e["time"] >= start_of_later for e in injected)
    assert all(future.labels[c.uid_of(e)] == 1 for e in injected)
    assert sum(future.labels.values()) == copies


def test_a_case_seed_draws_the_case_again_and_reproduces_it() -> None:
    host = host_capture()

    def attack_times(case_seed: int) -> list[list[int]]:
        built = c.injection_cases(
            "inject-5", host, [download()], 5, source_device=SOURCE_DEVICE, case_seed=case_seed
        )
        return [
            [orjson.loads(x)["time"] for x in case.test if c.uid_of_line(x).startswith("inj-")]
            for case in built
        ]

    # the default is the table's own draw, and a seed gives the same cases every time
    assert attack_times(c.CASE_SEED) == attack_times(0) == attack_times(0)
    # another seed puts the bursts elsewhere, with the same structure
    other = attack_times(1)
    assert other != attack_times(0)
    assert [len(t) for t in other] == [5, 5]


def test_injected_copies_are_near_identical_and_rewritten() -> None:
    original = download()
    attacks = c.inject(
        host_capture(),
        [original],
        20,
        tag="t",
        source_device=SOURCE_DEVICE,
        rng=np.random.default_rng(0),
    )
    assert len({c.uid_of(e) for e in attacks}) == 20
    for e in attacks:
        assert e["src_endpoint"]["ip"] == HOST_DEVICE  # the host's device is the victim
        assert e["dst_endpoint"] == {**original["dst_endpoint"]}  # server and service kept
        for key in ("bytes_in", "packets_out"):
            assert abs(e["traffic"][key] / original["traffic"][key] - 1) <= c.JITTER + 0.01
        assert e["traffic"]["bytes"] == e["traffic"]["bytes_in"] + e["traffic"]["bytes_out"]
        assert abs(e["duration"] / original["duration"] - 1) <= c.JITTER + 0.01
        assert e["end_time"] - e["time"] == original["end_time"] - original["time"]
    # not all identical: the jitter moves them
    assert len({e["traffic"]["bytes_in"] for e in attacks}) > 1
    # a burst: copies follow each other a few seconds apart
    times = [e["time"] for e in attacks]
    assert times == sorted(times)
    assert max(np.diff(times)) <= 6000
    assert original["src_endpoint"]["ip"] == SOURCE_DEVICE  # the source flow is untouched


def test_address_rewrite() -> None:
    assert c.rewrite_address(SOURCE_DEVICE, SOURCE_DEVICE, HOST_DEVICE) == HOST_DEVICE
    assert c.rewrite_address("192.168.1.1", SOURCE_DEVICE, HOST_DEVICE) == "192.168.100.1"
    assert c.rewrite_address("46.101.251.172", SOURCE_DEVICE, HOST_DEVICE) == "46.101.251.172"
    assert c.rewrite_address(None, SOURCE_DEVICE, HOST_DEVICE) is None


def test_jitter_keeps_missing_fields_missing() -> None:
    e = download()
    del e["traffic"]["bytes_in"], e["traffic"]["bytes_out"], e["traffic"]["bytes"]
    del e["duration"]
    out = c.jittered_copy(
        e,
        uid="u",
        time_ms=9,
        rng=np.random.default_rng(0),
        source_device=SOURCE_DEVICE,
        host_device=HOST_DEVICE,
    )
    assert "duration" not in out
    assert "bytes_in" not in out["traffic"]
    assert out["traffic"]["packets"] == out["traffic"]["packets_in"] + out["traffic"]["packets_out"]


def labeled_table(n_normal: int = 300) -> tuple[list[dict[str, Any]], dict[str, str]]:
    services = ["http", "smtp", "ftp", "dns", "ssh", "telnet"]
    events, family = [], {}
    for i in range(n_normal):
        e = flow(f"n{i}", 1000 * i)
        e["app_name"] = services[i % len(services)]
        events.append(e)
        family[f"n{i}"] = "normal"
    for f, count in (("neptune", 40), ("smurf", 30), ("satan", 25), ("back", 20), ("pod", 6)):
        for j in range(count):
            e = flow(f"{f}{j}", 1000 * (n_normal + len(events)) + j)
            e["app_name"] = "private"
            events.append(e)
            family[f"{f}{j}"] = f
    return events, family


def test_the_case_seed_reaches_the_dataset_builders(tmp_path: Path) -> None:
    import csv
    import gzip

    # Given a small NSL-KDD-shaped folder: benign rows and five attack families, mixed
    events, family = labeled_table(1200)
    order = np.random.default_rng(7).permutation(len(events))
    events = [events[i] for i in order]
    for i, e in enumerate(events):
        e["time"] = e["start_time"] = 1_000_000 + 1000 * i
    d = tmp_path / "nsl-kdd"
    d.mkdir()
    with gzip.open(d / "KDDTrain+_20Percent.ocsf.jsonl.gz", "wb") as fh:
        fh.writelines(orjson.dumps(e) + b"\n" for e in events)
    with (d / "KDDTrain+_20Percent.labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "is_malicious", "label", "difficulty"])
        for e in events:
            f = family[c.uid_of(e)]
            w.writerow([c.uid_of(e), int(f != "normal"), f, 21])

    def drawn(case_seed: int) -> dict[str, list[bytes]]:
        built = c.nsl_kdd_cases(tmp_path, train_size=400, case_seed=case_seed)
        return {case.key: case.train for case in built}

    # When the cases are drawn twice with one seed and once with another
    first, again, other = drawn(0), drawn(0), drawn(1)
    # Then one seed gives the same cases, and another seed other training rows for every
    # case drawn at random (the hard rows reuse the history -> future bundle)
    assert first == again
    assert set(other) == set(first)
    for key in ("nsl-kdd/future", "nsl-kdd/contaminated", "nsl-kdd-shift/future"):
        assert other[key] != first[key], key


def test_contaminated_sample_share_and_families() -> None:
    events, family = labeled_table()
    case = c.contaminated_sample(
        "t",
        events,
        family,
        rng=np.random.default_rng(0),
        size=200,
        attack_share=0.06,
        families=3,
    )
    assert len(case.train) == 200
    assert case.train == case.test
    attacks = [u for u, y in case.labels.items() if y]
    assert len(attacks) == 12
    assert len({family[u] for u in attacks}) == 3
    assert all(case.labels[u] == int(family[u] != "normal") for u in case.labels)


def test_shift_case_families_and_regimes() -> None:
    events, family = labeled_table(600)
    case = c.shift_case(
        "s",
        events,
        family,
        rng=np.random.default_rng(0),
        train_size=300,
        seen_families=2,
        seen_per_family=3,
        test_per_family=10,
    )
    train, test = uids(case.train), uids(case.test)
    assert not set(train) & set(test)
    seen = set(case.meta["seen_families"])
    train_families = {family[u] for u in train} - {"normal"}
    test_families = {family[u] for u in test} - {"normal"}
    assert train_families == seen
    assert test_families > seen  # unseen families are scored too
    assert all(case.labels[u] == int(family[u] != "normal") for u in test)
    by_uid = {c.uid_of(e): e for e in events}
    regime = [c.service_regime(by_uid[u]) == 0 for u in train if family[u] == "normal"]
    scored_regime = [c.service_regime(by_uid[u]) == 0 for u in test if family[u] == "normal"]
    # the shifted regime is a minority of training and a larger share of the scored part
    assert 0 < sum(regime) / len(regime) < sum(scored_regime) / len(scored_regime)


def test_stratified_keeps_every_group() -> None:
    rows = list(range(100))
    groups = ["a"] * 90 + ["b"] * 8 + ["c"] * 2
    picked = c.stratified(rows, groups, 20, np.random.default_rng(0), minimum=3)
    got = {groups[i] for i in picked}
    assert got == {"a", "b", "c"}
    assert len(picked) == len(set(picked))


def test_weighted_knn_follows_the_build_and_can_leave_an_event_out() -> None:
    from ocsf_detect_tools.config import DetectorConfig
    from ocsf_detect_tools.evaluation import weighted_knn_scores

    # Given a baseline of near-identical flows and one far-out flow inside it
    host = [flow(f"h{i}", 1_000_000 + 60_000 * i, bytes_in=100 + i % 3) for i in range(60)]
    odd = download()
    odd["time"] = odd["start_time"] = 1_000_000 + 30_000
    lines = c.dumps([*host, odd])
    # (the k-NN view alone: with the trees judging covered events, an event left out of
    # its own neighbours is no longer covered by itself, and loses the trees' evidence)
    config = DetectorConfig.model_validate(
        {
            "min_class_events": 30,
            "index": {"contamination": 0.0, "distinct_radius": 0.0},
            "isolation": {"enabled": False},
        }
    )
    # When the baseline is scored against itself, with and without the event itself
    served_like = weighted_knn_scores(lines, lines, config, exclude_self=False)
    left_out = weighted_knn_scores(lines, lines, config, exclude_self=True)
    # Then every line has a score, and the far-out flow is the top one either way
    assert np.isfinite(served_like).all()
    assert np.isfinite(left_out).all()
    assert int(np.argmax(left_out)) == len(lines) - 1
    # and leaving an event out of its own neighbours never lowers its score
    assert (left_out >= served_like - 1e-6).all()


def test_every_row_is_left_out_with_the_rows_of_its_dataset() -> None:
    def case(name: str, protocol: str = "future", bundle_of: str | None = None) -> c.Case:
        return c.Case(name, protocol, [], [], {}, bundle_of=bundle_of)

    cases = c.assign_groups(
        [
            case("nsl-kdd"),
            case("nsl-kdd", "contaminated"),
            case("nsl-kdd-hard", bundle_of="nsl-kdd"),
            case("nsl-kdd-full"),
            case("nsl-kdd-full-hard", bundle_of="nsl-kdd-full"),
            case("nsl-kdd-shift"),
            case("unsw-nb15-full", "contaminated"),
            case("iot23-8-1"),
            case("inject-5"),
            case("inject-diverse", "contaminated"),
        ]
    )
    assert [x.group for x in cases] == [
        "nsl-kdd",
        "nsl-kdd",
        "nsl-kdd",
        "nsl-kdd",
        "nsl-kdd",
        "nsl-kdd",
        "unsw-nb15",
        "iot23",
        "iot23",
        "iot23",
    ]
