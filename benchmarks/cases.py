"""Evaluation cases built from the shared labeled data (``../shared/data`` or
``OCSF_DETECT_DATA``), under two protocols:

- ``future`` (history -> future): train on earlier events, score later ones;
- ``contaminated`` (contaminated baseline): train on every event of the case, attacks
  included, and score the same events.

Case building is fixed by one seed (``CASE_SEED``, 0: the table every setting was chosen
on); ``load_cases(case_seed=N)`` draws every case again with another (other rows, other
attack families inside the baselines, other injected flows and moments), a check on the
table that no setting was chosen on. The detector's training seed varies apart from it.
Every builder here works on in-memory events (dicts) and labels, so the unit tests can
hand in small fixtures; ``load_cases`` reads the shared data and assembles them.
Labels are never put inside events: a ``Case`` carries ``uid -> is_malicious``.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import ipaddress
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

FUTURE = "future"
CONTAMINATED = "contaminated"
CASE_SEED = 0

# Sizes: a build trains 2,000 steps of 256 events per class whatever the class's size
# (about 30 s on this project's shared 2-core machine); the caps bound the rest of a
# build (indexing, calibration, scoring) so that all cases x 3 seeds stay within an
# hour; the cases keep their structure (a capture is subsampled uniformly in time).
TRAIN_CAP = 2000  # training events of the NSL-KDD and UNSW-NB15 cases
# ... and of their full-size rows ("-full"), where the capped training set grows to what
# the protocol has: every benign row of NSL-KDD's first half, every normal row of one
# half of UNSW-NB15, as held-out evaluations train. A detector's locality, its index
# net and its trees behave differently at ten times the baseline, and the capped rows
# alone would hide it.
FULL_CAP = 20_000
CAPTURE_CAP = 4000  # events of an IoT-23 capture (34-1 and 8-1 are larger)
HOST_CAP = 2000  # benign flows of the injection host (the first in time)

Event = dict[str, Any]


@dataclass
class Case:
    """One row of the evaluation: train on ``train``, score ``test``.

    ``labels``: uid -> 1 (attack) / 0 (benign) for every scored event. ``benign_only``:
    no attacks at all; only the alert rate is measured. ``bundle_of``: the name of another
    case whose bundle (same training events) this one reuses. ``note``: how it was drawn.
    """

    name: str
    protocol: str
    train: list[bytes]
    test: list[bytes]
    labels: dict[str, int]
    note: str = ""
    benign_only: bool = False
    bundle_of: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # left out together in leave-one-case-out (None: the case's own name): a full-size
    # row goes with the capped case drawn from the same data
    group: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.protocol}"

    @property
    def n_malicious(self) -> int:
        return sum(self.labels.get(uid_of_line(x), 0) for x in self.test)

    def train_digest(self) -> str:
        h = hashlib.sha256()
        for line in self.train:
            h.update(hashlib.sha256(line).digest())
        return h.hexdigest()


def uid_of(event: Event) -> str:
    return str(event["metadata"]["uid"])


def uid_of_line(line: bytes) -> str:
    return uid_of(orjson.loads(line))


def dumps(events: Iterable[Event]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


def data_dir() -> Path:
    return Path(os.environ.get("OCSF_DETECT_DATA", "../shared/data"))


# -- protocol splits -----------------------------------------------------------------------
def split_in_time(events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
    """First half in time and second half (stable on ties: file order)."""
    order = sorted(range(len(events)), key=lambda i: (events[i]["time"], i))
    mid = len(order) // 2
    return [events[i] for i in order[:mid]], [events[i] for i in order[mid:]]


def future_case(
    name: str,
    events: Sequence[Event],
    labels: dict[str, int],
    *,
    note: str = "",
    train_filter: dict[str, int] | None = None,
) -> Case:
    """History -> future: train on the first half in time (unlabeled, attacks included
    unless ``train_filter`` is given: then only events whose label is 0 in it), score the
    second half."""
    first, second = split_in_time(events)
    if train_filter is not None:
        first = [e for e in first if train_filter.get(uid_of(e)) == 0]
    scored = {uid_of(e): labels[uid_of(e)] for e in second}
    return Case(
        name,
        FUTURE,
        dumps(first),
        dumps(second),
        scored,
        note=note,
        benign_only=not any(scored.values()),
    )


def contaminated_case(
    name: str, events: Sequence[Event], labels: dict[str, int], *, note: str = ""
) -> Case:
    """Contaminated baseline: train on every event, attacks included; score the same."""
    lines = dumps(events)
    scored = {uid_of(e): labels[uid_of(e)] for e in events}
    return Case(name, CONTAMINATED, lines, list(lines), scored, note=note)


# -- injection of real attack flows into another capture's benign traffic ----------------
PRIVATE = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
)
JITTER = 0.03  # bytes, packets and duration move by up to +-3% between copies


def is_private(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in PRIVATE if addr.version == net.version)


def main_device(events: Sequence[Event]) -> str:
    """The capture's device: its most frequent private source address."""
    counts = Counter(
        ip for e in events if is_private(ip := (e.get("src_endpoint") or {}).get("ip"))
    )
    if not counts:
        raise ValueError("no private source address in the capture")
    return counts.most_common(1)[0][0]


def rewrite_address(ip: str | None, source_device: str, host_device: str) -> str | None:
    """The attack's device becomes the host capture's device; other private addresses
    move into the host device's /24 with their last octet kept; public ones stay."""
    if ip is None or not is_private(ip):
        return ip
    if ip == source_device:
        return host_device
    prefix = host_device.rsplit(".", 1)[0]
    return f"{prefix}.{ip.rsplit('.', 1)[1]}"


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    out = value * factor
    return max(0, round(out)) if isinstance(value, int) else max(0.0, out)


def jittered_copy(
    flow: Event,
    *,
    uid: str,
    time_ms: int,
    rng: np.random.Generator,
    source_device: str,
    host_device: str,
) -> Event:
    """A copy of ``flow`` as if it happened again at ``time_ms`` in the host capture:
    bytes, packets and duration scaled by up to +-``JITTER`` (each its own factor),
    a fresh ephemeral source port (the destination port, the service, is kept),
    addresses rewritten into the host's address space, totals recomputed."""
    e = copy.deepcopy(flow)
    e.setdefault("metadata", {})["uid"] = uid

    def factor() -> float:
        return float(1 + rng.uniform(-JITTER, JITTER))

    duration = e.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        e["duration"] = _scaled(duration, factor())
    traffic = e.get("traffic")
    if isinstance(traffic, dict):
        for key in ("bytes_out", "bytes_in", "packets_out", "packets_in"):
            if key in traffic:
                traffic[key] = _scaled(traffic[key], factor())
        if "bytes" in traffic or "bytes_out" in traffic or "bytes_in" in traffic:
            traffic["bytes"] = (traffic.get("bytes_out") or 0) + (traffic.get("bytes_in") or 0)
        if "packets" in traffic or "packets_out" in traffic or "packets_in" in traffic:
            traffic["packets"] = (traffic.get("packets_out") or 0) + (
                traffic.get("packets_in") or 0
            )
    unmapped = e.get("unmapped")
    if isinstance(unmapped, dict):
        for key in ("orig_ip_bytes", "resp_ip_bytes"):
            if key in unmapped:
                unmapped[key] = _scaled(unmapped[key], factor())
    start = e.get("time")
    e["time"] = time_ms
    if "start_time" in e:
        e["start_time"] = time_ms
    if "end_time" in e:
        length = (e["end_time"] - start) if isinstance(start, int) else 0
        e["end_time"] = time_ms + max(0, round(length))
    src = e.get("src_endpoint")
    if isinstance(src, dict):
        src["ip"] = rewrite_address(src.get("ip"), source_device, host_device)
        if isinstance(src.get("port"), int) and src["port"] >= 1024:
            src["port"] = int(rng.integers(32768, 61000))
    dst = e.get("dst_endpoint")
    if isinstance(dst, dict):
        dst["ip"] = rewrite_address(dst.get("ip"), source_device, host_device)
    return e


def inject(
    host: Sequence[Event],
    flows: Sequence[Event],
    copies: int,
    *,
    tag: str,
    source_device: str,
    rng: np.random.Generator,
    window: tuple[int, int] | None = None,
    spacing_ms: int = 4000,
) -> list[Event]:
    """Attack events to insert into ``host``: ``copies`` near-identical copies of each of
    ``flows`` (one flow and ``copies`` 1, 5 or 20: a small cluster; or several flows and
    ``copies`` 1: a diverse handful). A cluster starts at a random moment of ``window``
    (default: the host's time span) and its copies follow ``spacing_ms`` apart, +-50%:
    a burst, as such attacks come."""
    times = [e["time"] for e in host]
    lo, hi = window or (min(times), max(times))
    host_device = main_device(host)
    out = []
    for j, flow in enumerate(flows):
        t = int(rng.integers(lo, max(lo + 1, hi - copies * spacing_ms)))
        for c in range(copies):
            out.append(
                jittered_copy(
                    flow,
                    uid=f"inj-{tag}-{j}-{c}-{uid_of(flow)}",
                    time_ms=t,
                    rng=rng,
                    source_device=source_device,
                    host_device=host_device,
                )
            )
            t += int(spacing_ms * rng.uniform(0.5, 1.5))
    return out


def injection_cases(
    name: str,
    host: Sequence[Event],
    flows: Sequence[Event],
    copies: int,
    *,
    source_device: str,
    note: str = "",
    case_seed: int = CASE_SEED,
) -> list[Case]:
    """Both protocols for one injection: contaminated (the attacks inside the training
    data, everything scored) and future (the attacks only in the later half)."""
    benign = {uid_of(e): 0 for e in host}
    rng = np.random.default_rng(case_seed)
    attacks = inject(host, flows, copies, tag=name, source_device=source_device, rng=rng)
    labels = {**benign, **{uid_of(e): 1 for e in attacks}}
    mixed = sorted([*host, *attacks], key=lambda e: e["time"])
    contaminated = contaminated_case(name, mixed, labels, note=note)
    first, second = split_in_time(host)
    window = (min(e["time"] for e in second), max(e["time"] for e in second))
    later = inject(
        host, flows, copies, tag=name, source_device=source_device, rng=rng, window=window
    )
    later_labels = {**{uid_of(e): 0 for e in second}, **{uid_of(e): 1 for e in later}}
    future = Case(
        name,
        FUTURE,
        dumps(first),
        dumps(sorted([*second, *later], key=lambda e: e["time"])),
        later_labels,
        note=note,
    )
    return [future, contaminated]


# -- NSL-KDD / UNSW-NB15 sampling ----------------------------------------------------------
def stratified(
    rows: Sequence[int],
    groups: Sequence[str],
    total: int,
    rng: np.random.Generator,
    minimum: int = 1,
) -> list[int]:
    """``total`` of ``rows`` (about), each group represented by at least ``minimum`` (or
    all it has), the rest proportional to group size. ``groups[i]`` is row i's group."""
    by: dict[str, list[int]] = defaultdict(list)
    for r, g in zip(rows, groups, strict=True):
        by[g].append(r)
    n = len(rows)
    picked: list[int] = []
    for g in sorted(by):
        members = by[g]
        want = max(minimum, round(total * len(members) / n)) if n else 0
        want = min(want, len(members))
        picked += rng.choice(members, want, replace=False).tolist()
    return sorted(picked)


def service_regime(event: Event, buckets: int = 3) -> int:
    """A structural split of traffic: a stable hash of (protocol, service) into buckets."""
    proto = (event.get("connection_info") or {}).get("protocol_name")
    key = f"{proto}/{event.get('app_name')}".encode()
    return zlib.crc32(key) % buckets


def shift_case(
    name: str,
    events: Sequence[Event],
    family: dict[str, str],
    *,
    rng: np.random.Generator,
    train_size: int,
    shifted_share: float = 0.1,
    seen_families: int = 3,
    seen_per_family: int = 20,
    test_per_family: int = 60,
) -> Case:
    """Distribution shift (history -> future). The benign events split by structure, not
    at random: regime B (one bucket of ``service_regime``) is ``shifted_share`` of the
    benign training events and a full regime of the scored ones. ``seen_families`` attack
    families (drawn with ``rng``) sit in training as a small contamination and are scored
    again (other events of theirs); every other family appears only in the scored part.
    ``family``: uid -> attack family, "normal" for benign."""
    benign = [e for e in events if family[uid_of(e)] == "normal"]
    regime_b = [e for e in benign if service_regime(e) == 0]
    regime_a = [e for e in benign if service_regime(e) != 0]
    rng.shuffle(regime_a)  # type: ignore[arg-type]
    rng.shuffle(regime_b)  # type: ignore[arg-type]
    n_b = min(len(regime_b) // 2, int(train_size * shifted_share))
    n_a = min(train_size - n_b, (2 * len(regime_a)) // 3)
    train = regime_a[:n_a] + regime_b[:n_b]
    a_test = regime_a[n_a : n_a + max(1, n_a // 3)]
    b_test = regime_b[n_b : n_b + n_a // 3]
    test_benign = a_test + b_test
    attacks: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if family[uid_of(e)] != "normal":
            attacks[family[uid_of(e)]].append(e)
    names = sorted(f for f, v in attacks.items() if len(v) >= 2)
    seen = sorted(rng.choice(names, min(seen_families, len(names)), replace=False).tolist())
    test_attacks: list[Event] = []
    for f in names:
        members = list(attacks[f])
        rng.shuffle(members)  # type: ignore[arg-type]
        if f in seen:
            n_seen = min(seen_per_family, len(members) // 2)
            train += members[:n_seen]
            members = members[n_seen:]
        test_attacks += members[:test_per_family]
    test = sorted([*test_benign, *test_attacks], key=lambda e: e["time"])
    train.sort(key=lambda e: e["time"])
    labels = {uid_of(e): int(family[uid_of(e)] != "normal") for e in test}
    return Case(
        name,
        FUTURE,
        dumps(train),
        dumps(test),
        labels,
        note=(
            f"benign by (protocol, service) hash: regime B {n_b:,} of {len(train):,} "
            f"training events, {len(b_test):,} of {len(test_benign):,} scored benign; "
            f"attack families in training (as "
            f"contamination) and scored: {', '.join(seen)}; only scored: "
            f"{len(names) - len(seen)} others"
        ),
        meta={"seen_families": seen},
    )


def contaminated_sample(
    name: str,
    events: Sequence[Event],
    family: dict[str, str],
    *,
    rng: np.random.Generator,
    size: int,
    attack_share: float,
    families: int | None,
    note: str = "",
) -> Case:
    """A contaminated baseline drawn from a labeled table: ``size`` events of which
    ``attack_share`` attacks, from ``families`` attack families drawn with ``rng``
    (None: every family, stratified), so that attacks sit inside the baseline as
    clusters. Trained on and scored as one set."""
    benign = [i for i, e in enumerate(events) if family[uid_of(e)] == "normal"]
    attack_rows = [i for i, e in enumerate(events) if family[uid_of(e)] != "normal"]
    n_attack = max(1, round(size * attack_share))
    fams = [family[uid_of(events[i])] for i in attack_rows]
    if families is not None:
        counts = Counter(fams)
        eligible = sorted(f for f, c in counts.items() if c >= n_attack // families)
        chosen = set(rng.choice(eligible, min(families, len(eligible)), replace=False).tolist())
        kept = [(i, f) for i, f in zip(attack_rows, fams, strict=True) if f in chosen]
        per = n_attack // len(chosen)
        by: dict[str, list[int]] = defaultdict(list)
        for i, f in kept:
            by[f].append(i)
        picked_attacks = sorted(
            i for f in sorted(by) for i in rng.choice(by[f], per, replace=False).tolist()
        )
    else:
        picked_attacks = stratified(attack_rows, fams, n_attack, rng, minimum=5)
    picked_benign = sorted(rng.choice(benign, size - len(picked_attacks), replace=False).tolist())
    chosen_events = [events[i] for i in sorted(picked_benign + picked_attacks)]
    labels = {uid_of(e): int(family[uid_of(e)] != "normal") for e in chosen_events}
    present = sorted({family[uid_of(events[i])] for i in picked_attacks})
    note = note or (
        f"{len(chosen_events):,} events, {len(picked_attacks)} attacks "
        f"({len(picked_attacks) / len(chosen_events):.1%}) from {', '.join(present)}"
    )
    return contaminated_case(name, chosen_events, labels, note=note)


# -- the shared data -----------------------------------------------------------------------
def _read_events(path: Path) -> list[Event]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def nsl_kdd_cases(
    root: Path, train_size: int = TRAIN_CAP, name: str = "nsl-kdd", case_seed: int = CASE_SEED
) -> list[Case]:
    """History -> future, its hard subset, contaminated and (at the capped size) the
    distribution shift; ``train_size``: training events (capped at the benign rows of
    the first half)."""
    d = root / "nsl-kdd"
    events = _read_events(d / "KDDTrain+_20Percent.ocsf.jsonl.gz")
    rows = _csv(d / "KDDTrain+_20Percent.labels.csv")
    labels = {r["uid"]: int(r["is_malicious"]) for r in rows}
    family = {r["uid"]: r["label"] for r in rows}
    hard = {r["uid"] for r in rows if int(r["difficulty"]) <= 20}
    half = len(events) // 2
    rng = np.random.default_rng(case_seed)
    benign_first = [e for e in events[:half] if labels[uid_of(e)] == 0]
    size = min(train_size, len(benign_first))
    picked = sorted(rng.choice(len(benign_first), size, replace=False).tolist())
    train = [benign_first[i] for i in picked]
    test = events[half:]
    cases = [
        Case(
            name,
            FUTURE,
            dumps(train),
            dumps(test),
            {uid_of(e): labels[uid_of(e)] for e in test},
            note=f"{len(train):,} of the {len(benign_first):,} benign rows of the first half "
            "-> the whole second half",
        )
    ]
    hard_test = [e for e in test if uid_of(e) in hard]
    cases.append(
        Case(
            f"{name}-hard",
            FUTURE,
            cases[0].train,
            dumps(hard_test),
            {uid_of(e): labels[uid_of(e)] for e in hard_test},
            note="same bundle; second-half rows of difficulty <= 20",
            bundle_of=name,
        )
    )
    cases.append(
        contaminated_sample(name, events, family, rng=rng, size=size, attack_share=0.03, families=4)
    )
    if train_size > TRAIN_CAP:
        return cases
    cases.append(
        shift_case(
            "nsl-kdd-shift",
            events,
            family,
            rng=np.random.default_rng(case_seed),
            train_size=TRAIN_CAP,
        )
    )
    return cases


def unsw_cases(
    root: Path,
    train_size: int = TRAIN_CAP,
    test_size: int = 8000,
    name: str = "unsw-nb15",
    case_seed: int = CASE_SEED,
) -> list[Case]:
    """History -> future (the same scored rows whatever ``train_size``) and contaminated
    (``train_size`` events, capped at one half of the normal rows)."""
    d = root / "unsw-nb15"
    events = _read_events(d / "events.jsonl.gz")
    rows = _csv(d / "labels.csv")
    family = {r["uid"]: ("normal" if r["is_malicious"] == "0" else r["label"]) for r in rows}
    rng = np.random.default_rng(case_seed)
    normal = [i for i, e in enumerate(events) if family[uid_of(e)] == "normal"]
    attack = [i for i, e in enumerate(events) if family[uid_of(e)] != "normal"]
    normal_perm = rng.permutation(normal).tolist()
    half = len(normal_perm) // 2
    train_rows = sorted(normal_perm[:half][:train_size])
    n_attack = test_size // 8
    test_normal = normal_perm[half:][: test_size - n_attack]
    test_attack = stratified(
        attack, [family[uid_of(events[i])] for i in attack], n_attack, rng, minimum=20
    )
    test_rows = sorted(test_normal + test_attack)
    future = Case(
        name,
        FUTURE,
        dumps(events[i] for i in train_rows),
        dumps(events[i] for i in test_rows),
        {uid_of(events[i]): int(family[uid_of(events[i])] != "normal") for i in test_rows},
        note=(
            f"{len(train_rows):,} of one half of the normal rows -> {len(test_normal):,} of the "
            f"other half + {len(test_attack):,} attacks (every category, stratified)"
        ),
    )
    contaminated = contaminated_sample(
        name, events, family, rng=rng, size=len(train_rows), attack_share=0.03, families=None
    )
    return [future, contaminated]


IOT_TABLE_CAPTURES = ("CTU-Malware-Capture-20-1", "CTU-Malware-Capture-44-1")
INJECTION_HOST = "CTU-Malware-Capture-20-1"  # its benign flows; its own attacks left out
CLUSTER_SOURCE = ("CTU-Malware-Capture-44-1", "C&C-FileDownload")


def short_capture(capture: str) -> str:
    return "iot23-" + capture.rsplit("-", 2)[-2] + "-" + capture.rsplit("-", 1)[-1]


def iot23_cases(root: Path, case_seed: int = CASE_SEED) -> list[Case]:
    d = root / "iot23"
    rows = _csv(d / "labels.csv")
    labels = {r["uid"]: int(r["is_malicious"]) for r in rows}
    capture_of = {r["uid"]: r["capture"] for r in rows}
    detail = {r["uid"]: r["detailed_label"] for r in rows}
    by: dict[str, list[Event]] = defaultdict(list)
    for e in _read_events(d / "ocsf_network_activity.jsonl.gz"):
        by[capture_of[uid_of(e)]].append(e)
    cases: list[Case] = []
    rng = np.random.default_rng(case_seed)
    for capture, whole in sorted(by.items()):
        name = short_capture(capture)
        events = whole
        if len(whole) > CAPTURE_CAP:  # uniformly over the capture, kept in time order
            events = [whole[i] for i in sorted(rng.choice(len(whole), CAPTURE_CAP, False))]
        ys = {labels[uid_of(e)] for e in events}
        share = sum(labels[uid_of(e)] for e in events) / len(events)
        if ys == {0}:
            cases.append(future_case(name, events, labels, note="benign-only honeypot"))
            continue
        note = f"{share:.1%} attacks"
        if len(whole) > len(events):
            note += f", {len(events):,} of the capture's {len(whole):,} flows"
        cases.append(future_case(name, events, labels, note=note))
        cases.append(contaminated_case(name, events, labels, note=note))
    # Injection: real attack flows of other captures inside 20-1's benign traffic.
    host = [e for e in by[INJECTION_HOST] if labels[uid_of(e)] == 0]
    host = sorted(host, key=lambda e: e["time"])[:HOST_CAP]
    src_capture, src_label = CLUSTER_SOURCE
    source = by[src_capture]
    rng = np.random.default_rng(case_seed)
    downloads = [e for e in source if detail[uid_of(e)] == src_label]
    flow = downloads[int(rng.integers(len(downloads)))]
    for copies in (1, 5, 20):
        cases += injection_cases(
            f"inject-{copies}",
            host,
            [flow],
            copies,
            source_device=main_device(source),
            case_seed=case_seed,
            note=f"{copies} x one {src_label} flow of {short_capture(src_capture)} "
            f"in the first {len(host):,} benign flows of {short_capture(INJECTION_HOST)}",
        )
    cases += _diverse_injection(by, labels, detail, host, rng)
    return cases


def _diverse_injection(
    by: dict[str, list[Event]],
    labels: dict[str, int],
    detail: dict[str, str],
    host: list[Event],
    rng: np.random.Generator,
    n: int = 8,
) -> list[Case]:
    """``n`` different attack flows (one per (capture, detailed label), round robin over
    the attack captures other than the host), each inserted once."""
    pools: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for capture, events in sorted(by.items()):
        if capture == INJECTION_HOST:
            continue
        for e in events:
            if labels[uid_of(e)]:
                pools[(capture, detail[uid_of(e)])].append(e)
    keys = sorted(pools)
    flows: list[tuple[str, Event]] = []
    used: set[str] = set()
    while len(flows) < n and keys:
        for key in keys:
            if len(flows) >= n:
                break
            candidates = [e for e in pools[key] if uid_of(e) not in used]
            if candidates:
                e = candidates[int(rng.integers(len(candidates)))]
                used.add(uid_of(e))
                flows.append((key[0], e))
    # each flow keeps its own capture's device mapping
    name = "inject-diverse"
    cases: list[Case] = []
    benign = {uid_of(e): 0 for e in host}
    first, second = split_in_time(host)
    window = (min(e["time"] for e in second), max(e["time"] for e in second))
    all_attacks: list[Event] = []
    later: list[Event] = []
    for j, (capture, flow) in enumerate(flows):
        device = main_device(by[capture])
        all_attacks += inject(host, [flow], 1, tag=f"{name}{j}", source_device=device, rng=rng)
        later += inject(
            host, [flow], 1, tag=f"{name}{j}f", source_device=device, rng=rng, window=window
        )
    labels_all = {**benign, **{uid_of(e): 1 for e in all_attacks}}
    note = (
        f"{len(flows)} different attack flows ("
        + ", ".join(sorted({f"{short_capture(c)} {detail[uid_of(f)]}" for c, f in flows}))
        + f") in the first {len(host):,} benign flows of {short_capture(INJECTION_HOST)}"
    )
    cases.append(
        Case(
            name,
            FUTURE,
            dumps(first),
            dumps(sorted([*second, *later], key=lambda e: e["time"])),
            {**{uid_of(e): 0 for e in second}, **{uid_of(e): 1 for e in later}},
            note=note,
        )
    )
    cases.append(
        contaminated_case(
            name, sorted([*host, *all_attacks], key=lambda e: e["time"]), labels_all, note=note
        )
    )
    return cases


def assign_groups(cases: list[Case]) -> list[Case]:
    """Set each case's leave-one-case-out group: the dataset its events come from. Cases
    of one dataset share events, so one left out must take the others with it, or they
    vote for it with its own data: NSL-KDD's capped, full-size, hard and shifted rows are
    drawn from the same files (the hard rows are even scored by the same bundles), and
    every IoT-23 row shares a capture with another (the injections put flows of 44-1 and
    of the other attack captures into 20-1's benign traffic). So the groups are NSL-KDD,
    UNSW-NB15 and IoT-23: a leave-one-dataset-out, three units, no more independent than
    that."""
    for case in cases:
        name = case.bundle_of or case.name
        case.group = next((g for g in DATASET_GROUPS if name.startswith(g)), "iot23")
    return cases


# Prefixes of the case names per dataset; any other case is an IoT-23 capture or an
# injection into one.
DATASET_GROUPS = ("nsl-kdd", "unsw-nb15")


def load_cases(
    root: Path | None = None, only: set[str] | None = None, case_seed: int = CASE_SEED
) -> list[Case]:
    """Every case the shared data allows (``only``: names to keep, with the cases whose
    bundle they reuse), drawn with ``case_seed``."""
    root = root or data_dir()
    full = nsl_kdd_cases(root, FULL_CAP, name="nsl-kdd-full", case_seed=case_seed) + unsw_cases(
        root, FULL_CAP, name="unsw-nb15-full", case_seed=case_seed
    )
    cases = assign_groups(
        nsl_kdd_cases(root, case_seed=case_seed)
        + unsw_cases(root, case_seed=case_seed)
        + iot23_cases(root, case_seed=case_seed)
        + full
    )
    if only is None:
        return cases
    wanted = set(only) | {c.bundle_of for c in cases if c.name in only and c.bundle_of}
    return [c for c in cases if c.name in wanted]
