"""Deterministic, labeled synthetic OCSF traffic: the public entry point.

``generate_traffic`` draws benign activity of the organisation (``organisation``) over a
window of simulated time, shaped by working hours, then mixes in labeled attack
episodes (``attacks``). Everything random comes from ``random.Random(seed)``: the same
arguments give byte-identical output, and no wall clock is read.

>>> traffic = generate_traffic(1000, seed=3)
>>> len(traffic.events) == len(traffic.labels) == 1000
True
"""

from __future__ import annotations

import gc
import gzip
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any, Final

import orjson

from ocsf_detect_tools.simulate import attacks as attack_injectors
from ocsf_detect_tools.simulate.endpoint import endpoint_events
from ocsf_detect_tools.simulate.organisation import (
    BACKGROUND_INTENSITY,
    DAY_MS,
    MINUTE_MS,
    Host,
    Organisation,
    Site,
    User,
    Weighted,
    build_organisation,
)
from ocsf_detect_tools.simulate.records import (
    INBOUND,
    LATERAL,
    NOERROR,
    NXDOMAIN,
    OKTA,
    OPENSSH,
    OPENVPN,
    OUTBOUND,
    SERVFAIL,
    WINDOWS_SECURITY,
    EventFactory,
    Product,
    dns_answer,
    endpoint,
    tcp_packets,
    udp_packets,
)

BENIGN: Final = "benign"
DEFAULT_START_MS: Final = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
"""Monday 2026-03-02T00:00Z: a fixed start keeps the default output deterministic."""
DEFAULT_DAYS: Final = 7.0

# Share of each OCSF class in benign traffic: Network 55 %, DNS 30 %, Authentication 15 %.
_NETWORK_SHARE: Final = 0.55
_DNS_SHARE: Final = 0.30
# Share of the web, endpoint and identity sources (``endpoint``) where they are generated.
ENDPOINT_SHARE: Final = 0.3
# Failure rate of people's own logons (typos, expired passwords): about 3 % of all logons.
BENIGN_AUTH_FAILURE_RATE: Final = 0.045


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one event: ``attack_type`` is "benign" for normal events."""

    uid: str
    is_malicious: int
    attack_type: str


@dataclass(frozen=True)
class Traffic:
    """Events sorted by ``time`` and one label per event, in the same order."""

    events: list[dict[str, Any]]
    labels: list[Label]

    def attack_counts(self) -> dict[str, int]:
        """Number of events per attack type (benign excluded), by type name."""
        counts = Counter(lb.attack_type for lb in self.labels if lb.is_malicious)
        return dict(sorted(counts.items()))


def generate_traffic(
    n_events: int,
    *,
    seed: int = 7,
    attacks: bool = True,
    start_ms: int | None = None,
    days: float | None = None,
    attack_fraction: float = 0.03,
    org_seed: int = 1,
    endpoint: bool = False,
) -> Traffic:
    """``n_events`` labeled OCSF events over ``days`` of simulated time from ``start_ms``.

    About ``attack_fraction`` of the events are attacks (none when ``attacks`` is false),
    spread over the five types of ``attacks.ATTACK_TYPES``. ``org_seed`` fixes the
    organisation, ``seed`` the traffic: a baseline and a live set with different seeds
    describe the same hosts, users and names. Defaults: 7 days from 2026-03-02T00:00Z.

    ``endpoint``: also the web, endpoint, identity and cloud sources (``endpoint``: HTTP,
    Process, File System and API Activity and Account Change, with four attack types), as
    ``ENDPOINT_SHARE`` of the events and of the attacks. They draw from a random source
    of their own: the network, DNS and authentication events stay those of the same
    arguments without them, fewer in number.

    Raises ``ValueError`` for a negative count, an empty window or a fraction outside
    [0, 1).
    """
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if not 0.0 <= attack_fraction < 1.0:
        raise ValueError(f"attack_fraction must be in [0, 1), got {attack_fraction}")
    span_days = DEFAULT_DAYS if days is None else days
    if not span_days * DAY_MS >= MINUTE_MS:
        raise ValueError(f"days must cover at least one minute, got {days}")
    start = DEFAULT_START_MS if start_ms is None else int(start_ms)
    end = start + int(span_days * DAY_MS)

    org = build_organisation(org_seed)
    rng = random.Random(seed)
    factory = EventFactory(rng)
    n_attack = round(n_events * attack_fraction) if attacks else 0
    n_extra = round(n_events * ENDPOINT_SHARE) if endpoint else 0
    extra_attack = round(n_attack * ENDPOINT_SHARE) if endpoint else 0
    n_events, n_attack = n_events - n_extra, n_attack - extra_attack
    with _cyclic_gc_paused():
        benign = _BenignTraffic(org, rng, factory).generate(n_events - n_attack, start, end)
        malicious = attack_injectors.inject_attacks(
            org, rng, factory=factory, start_ms=start, end_ms=end, n_attack=n_attack
        )
        pairs = [(event, BENIGN) for event in benign] + malicious
        if endpoint:
            own = random.Random(f"ocsf-detect-endpoint:{seed}")
            pairs += endpoint_events(
                org,
                own,
                EventFactory(own),
                start_ms=start,
                end_ms=end,
                n_benign=n_extra - extra_attack,
                n_attack=extra_attack,
            )
        pairs.sort(key=lambda pair: pair[0]["time"])  # stable: ties keep generation order
        events = [event for event, _ in pairs]
        labels = [
            Label(event["metadata"]["uid"], int(kind != BENIGN), kind) for event, kind in pairs
        ]
    return Traffic(events, labels)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Millions of new dicts make the cyclic collector rescan the growing heap again and
    again (half the run time); they hold no reference cycles, so pause it meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def write_jsonl(events: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write one JSON object per line (gzip when ``path`` ends in .gz); returns the count.

    The gzip header carries no file name or time, so equal events give equal bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with ExitStack() as stack:
        raw = stack.enter_context(path.open("wb"))
        write: Callable[[bytes], object] = raw.write
        if path.name.endswith(".gz"):
            write = stack.enter_context(
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
            ).write
        chunk: list[bytes] = []
        for event in events:
            chunk.append(orjson.dumps(event))
            count += 1
            if len(chunk) >= 4096:
                write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            write(b"\n".join(chunk) + b"\n")
    return count


def write_labels_csv(labels: Sequence[Label], path: str | Path) -> int:
    """Write ``uid,is_malicious,attack_type`` rows under that header; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["uid,is_malicious,attack_type"]
    lines.extend(f"{lb.uid},{lb.is_malicious},{lb.attack_type}" for lb in labels)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(labels)


# --- benign traffic ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Service:
    """Size and duration of one kind of flow: log-normal medians and spreads."""

    protocol: str
    app_name: str | None
    out_median: float
    out_sigma: float
    in_median: float
    in_sigma: float
    duration_median_ms: float
    duration_sigma: float


HTTPS: Final = _Service("tcp", "ssl", 1800, 1.0, 28_000, 1.8, 1500, 1.6)
HTTP: Final = _Service("tcp", "http", 600, 0.8, 12_000, 1.8, 400, 1.3)
SAAS_SYNC: Final = _Service("tcp", "ssl", 6000, 1.4, 35_000, 1.6, 45_000, 1.3)
CLOUD_UPLOAD: Final = _Service("tcp", "ssl", 2_000_000, 1.4, 25_000, 1.0, 20_000, 1.0)
VIDEO_CALL: Final = _Service("udp", None, 60e6, 0.8, 110e6, 0.8, 1_800_000, 0.6)
SMB: Final = _Service("tcp", "smb", 6000, 1.8, 150_000, 2.0, 4000, 2.0)
KERBEROS: Final = _Service("tcp", "krb_tcp", 1400, 0.4, 1500, 0.4, 8, 0.8)
LDAP: Final = _Service("tcp", "ldap", 900, 0.8, 3500, 1.2, 30, 1.5)
DCE_RPC: Final = _Service("tcp", "dce_rpc", 700, 0.6, 900, 0.6, 12, 1.0)
IMAPS: Final = _Service("tcp", "ssl", 2500, 1.2, 25_000, 2.0, 8000, 2.0)
SUBMISSION: Final = _Service("tcp", "smtp", 60_000, 1.5, 1500, 0.5, 1500, 1.0)
POSTGRES: Final = _Service("tcp", None, 3000, 1.5, 40_000, 2.2, 300, 2.0)
SSH: Final = _Service("tcp", "ssh", 40_000, 1.5, 250_000, 1.8, 600_000, 1.2)
DNS: Final = _Service("udp", "dns", 45, 0.25, 130, 0.5, 6, 1.0)
NTP: Final = _Service("udp", "ntp", 48, 0.0, 48, 0.0, 15, 0.8)
TELEMETRY: Final = _Service("tcp", "ssl", 3500, 1.0, 4500, 0.9, 900, 1.0)
OCSP: Final = _Service("tcp", "http", 450, 0.2, 1500, 0.4, 60, 0.8)
UPDATES: Final = _Service("tcp", "ssl", 2500, 0.8, 2_000_000, 2.0, 15_000, 1.5)
INBOUND_WEB: Final = _Service("tcp", "ssl", 900, 0.9, 22_000, 1.6, 800, 1.4)
SMTP: Final = _Service("tcp", "smtp", 35_000, 1.6, 1800, 0.4, 1800, 1.0)
APP_DB: Final = _Service("tcp", None, 1500, 1.2, 9000, 1.8, 40, 1.5)
BACKUP: Final = _Service("tcp", "smb", 400e6, 1.0, 200_000, 0.8, 600_000, 0.8)
MONITOR_SSH: Final = _Service("tcp", "ssh", 3500, 0.4, 6000, 0.6, 1500, 0.5)
LDAPS: Final = replace(LDAP, app_name="ssl")
HTTP_UPDATES: Final = replace(UPDATES, app_name="http")

_DC_SERVICES: Final = Weighted(
    ((88, KERBEROS), (389, LDAP), (445, SMB), (135, DCE_RPC)), (40, 30, 20, 10)
)
_SERVER_DC_SERVICES: Final = Weighted(((389, LDAP), (636, LDAPS), (88, KERBEROS)), (1, 1, 1))

# Zeek conn_state of benign flows and the history string that goes with it.
_TCP_STATES: Final = Weighted(
    ("SF", "S1", "OTH", "RSTO", "RSTR", "S0", "REJ"), (0.88, 0.03, 0.01, 0.03, 0.02, 0.02, 0.01)
)
_TCP_HISTORY: Final = {
    "SF": "ShADadFf", "S1": "ShADad", "OTH": "Dd", "RSTO": "ShADadR", "RSTR": "ShADadr",
    "S0": "S", "REJ": "Sr",
}  # fmt: skip
_THROUGHPUT_BYTES_PER_MS: Final = 12_500  # 100 Mbit/s: no flow finishes faster than that

_BROWSE_KINDS: Final = Weighted(("web", "cdn", "saas"), (45, 35, 20))
_LOOKUP_KINDS: Final = Weighted(
    ("web", "cdn", "saas", "telemetry", "storage", "update", "pki", "video", "idp"),
    (40, 25, 20, 5, 3, 2, 3, 1, 1),
)
_BACKGROUND_LOOKUP_KINDS: Final = Weighted(("update", "telemetry", "pki", "ntp"), (35, 40, 15, 10))
_SITE_QUERY_TYPES: Final = Weighted(("A", "AAAA", "CNAME", "TXT"), (68, 28, 2, 2))
_MAIL_QUERY_TYPES: Final = Weighted(("MX", "TXT", "A", "PTR", "DNSBL"), (25, 20, 10, 20, 25))
_WORKSTATION_LOGON_TYPES: Final = Weighted((7, 2, 11), (50, 35, 15))  # unlock, logon, cached

_SSO_APPS: Final = (
    "Microsoft 365", "Slack", "Atlassian Cloud", "Salesforce", "AWS Console", "Zoom",
    "Figma", "Datadog", "GitHub", "HubSpot",
)  # fmt: skip
_LINUX_SERVER_ROLES: Final = ("db", "mail", "web", "dns", "vpn", "jump")

Scenario = Callable[[int], dict[str, Any]]


def _scenario_table(*entries: tuple[float, Scenario]) -> Weighted[Scenario]:
    return Weighted([fn for _, fn in entries], [w for w, _ in entries])


class _BenignTraffic:
    """Normal activity of the organisation: people at work and always-on servers."""

    def __init__(self, org: Organisation, rng: random.Random, factory: EventFactory) -> None:
        self.org = org
        self.rng = rng
        self.factory = factory
        self.servers = org.servers
        self.linux_servers = tuple(org.servers[r] for r in _LINUX_SERVER_ROLES)
        self.remote_workers = tuple(u for u in org.users if u.home_ip)
        self.admin_hosts = tuple(h for a in org.admins for h in org.workstations_of(a.name))
        self.windows_hosts = tuple(h for h in org.workstations if h.os == "windows")
        self.server_hosts = tuple(org.servers.values())
        self.office = next(s for s in org.sites if s.hostname == "outlook.office365.com")
        # Senders the mail server checks against block lists: mail peers and some spammers.
        self.smtp_senders = org.mail_peers + org.web_clients[:20]
        # Domain-joined machines authenticate to the DC with their computer account.
        self.machine_accounts = {
            h.hostname: User(
                h.hostname.split(".")[0].upper() + "$", f"{org.domain_sid}-{2101 + i}", 3
            )
            for i, h in enumerate(org.workstations)
        }

        self.network_user = _scenario_table(
            (0.36, self._browse),
            (0.08, self._saas_sync),
            (0.02, self._cloud_upload),
            (0.01, self._video_call),
            (0.12, self._file_share),
            (0.08, self._directory),
            (0.05, self._mail_client),
            (0.04, self._intranet),
            (0.015, self._ssh_admin),
            (0.12, self._dns_flow_client),
            (0.01, self._ntp_client),
            (0.05, self._telemetry),
            (0.02, self._ocsp),
            (0.015, self._client_updates),
        )
        self.network_background = _scenario_table(
            (0.14, self._dns_flow_server),
            (0.08, self._ntp_server),
            (0.18, self._inbound_web),
            (0.06, self._smtp_in),
            (0.03, self._smtp_out),
            (0.14, self._app_db),
            (0.02, self._backup),
            (0.05, self._server_updates),
            (0.12, self._telemetry),
            (0.08, self._server_directory),
            (0.05, self._monitoring),
            (0.02, self._ocsp),
        )
        self.dns_user = _scenario_table(
            (0.76, self._lookup_site),
            (0.12, self._lookup_internal),
            (0.05, self._lookup_nx),
            (0.05, self._lookup_dc_locator),
            (0.02, self._lookup_office_probe),
        )
        self.dns_background = _scenario_table(
            (0.40, self._lookup_background_site),
            (0.20, self._lookup_internal),
            (0.25, self._lookup_mail),
            (0.05, self._lookup_dc_locator),
            (0.10, self._lookup_nx),
        )
        self.auth_user = _scenario_table(
            (0.30, self._workstation_logon),
            (0.08, self._workstation_logoff),
            (0.20, self._file_server_logon),
            (0.20, self._sso_logon),
            (0.08, self._vpn_logon),
            (0.06, self._ssh_logon),
            (0.08, self._service_ticket),
        )
        self.auth_background = _scenario_table(
            (0.35, self._service_account_logon),
            (0.25, self._machine_account_logon),
            (0.20, self._monitor_logon),
            (0.10, self._vpn_logon),
            (0.10, self._sso_logon),
        )

    # --- sampling --------------------------------------------------------------------------
    def generate(self, n: int, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """``n`` benign events between ``start_ms`` and ``end_ms``, in generation order."""
        if n <= 0:
            return []
        rng, org = self.rng, self.org
        # Intensity per minute = people (working hours) + servers (constant); each event
        # is drawn from one of the two in proportion to their share of that minute.
        n_minutes = max(1, (end_ms - start_ms) // MINUTE_MS)
        people = [org.user_intensity(start_ms + m * MINUTE_MS) for m in range(n_minutes)]
        cum = list(accumulate(p + BACKGROUND_INTENSITY for p in people))
        minutes = rng.choices(range(n_minutes), cum_weights=cum, k=n)
        last = end_ms - 1
        events = []
        for minute in minutes:
            t = min(start_ms + minute * MINUTE_MS + rng.randrange(MINUTE_MS), last)
            p = people[minute]
            is_people = rng.random() * (p + BACKGROUND_INTENSITY) < p
            r = rng.random()
            if r < _NETWORK_SHARE:
                table = self.network_user if is_people else self.network_background
            elif r < _NETWORK_SHARE + _DNS_SHARE:
                table = self.dns_user if is_people else self.dns_background
            else:
                table = self.auth_user if is_people else self.auth_background
            events.append(table.pick(rng)(t))
        return events

    def _lognormal(self, median: float, sigma: float) -> int:
        if sigma == 0.0:
            return int(median)
        return int(median * math.exp(sigma * self.rng.gauss(0.0, 1.0)))

    def _port(self, host: Host) -> int:
        return self.rng.randint(*host.ephemeral_ports)

    def _workstation(self) -> Host:
        return self.rng.choice(self.org.workstations)

    def _site(self, kind: str) -> Site:
        return self.org.site_groups[kind].pick(self.rng)

    # --- network activity ------------------------------------------------------------------
    def _flow(
        self,
        t: int,
        src: dict[str, Any],
        dst: dict[str, Any],
        service: _Service,
        direction_id: int,
    ) -> dict[str, Any]:
        rng = self.rng
        bytes_out = self._lognormal(service.out_median, service.out_sigma)
        bytes_in = self._lognormal(service.in_median, service.in_sigma)
        duration = self._lognormal(service.duration_median_ms, service.duration_sigma)
        app_name = service.app_name
        if service.protocol == "udp":
            status = "SF" if rng.random() < 0.97 else "S0"
            history = "Dd" if status == "SF" else "D"
            if status == "S0":
                bytes_in, duration, app_name = 0, 0, None
            packets_out, packets_in = udp_packets(bytes_out, bytes_in)
        else:
            status = _TCP_STATES.pick(rng)
            history = _TCP_HISTORY[status]
            if status == "S0":  # SYN retransmitted, never answered
                packets_out = rng.choice((1, 2, 3))
                bytes_out = bytes_in = packets_in = 0
                duration = 3000 * (packets_out - 1)
                app_name = None
            elif status == "REJ":
                bytes_out = bytes_in = 0
                packets_out = packets_in = 1
                duration = rng.randint(0, 2)
                app_name = None
            else:
                if status != "SF":  # cut short or still open: part of the transfer
                    cut = rng.uniform(0.05, 0.9)
                    bytes_out, bytes_in = int(bytes_out * cut), int(bytes_in * cut)
                packets_out, packets_in = tcp_packets(bytes_out, bytes_in)
        duration = max(duration, (bytes_out + bytes_in) // _THROUGHPUT_BYTES_PER_MS)
        return self.factory.network(
            time_ms=t,
            src=src,
            dst=dst,
            protocol=service.protocol,
            direction_id=direction_id,
            status_code=status,
            bytes_out=bytes_out,
            bytes_in=bytes_in,
            packets_out=packets_out,
            packets_in=packets_in,
            duration_ms=duration,
            history=history,
            app_name=app_name,
        )

    def _from_host(self, host: Host) -> dict[str, Any]:
        return endpoint(host.ip, self._port(host), host.hostname)

    def _to_host(self, host: Host, port: int) -> dict[str, Any]:
        return endpoint(host.ip, port, host.hostname)

    def _to_site(self, site: Site, port: int) -> dict[str, Any]:
        return endpoint(self.rng.choice(site.ips), port, site.hostname)

    def _outbound(self, t: int, host: Host, site: Site, port: int, svc: _Service) -> dict[str, Any]:
        return self._flow(t, self._from_host(host), self._to_site(site, port), svc, OUTBOUND)

    def _lateral(self, t: int, src: Host, dst: Host, port: int, svc: _Service) -> dict[str, Any]:
        return self._flow(t, self._from_host(src), self._to_host(dst, port), svc, LATERAL)

    def _browse(self, t: int) -> dict[str, Any]:
        kind = _BROWSE_KINDS.pick(self.rng)
        if self.rng.random() < 0.05:
            return self._outbound(t, self._workstation(), self._site(kind), 80, HTTP)
        return self._outbound(t, self._workstation(), self._site(kind), 443, HTTPS)

    def _saas_sync(self, t: int) -> dict[str, Any]:
        return self._outbound(t, self._workstation(), self._site("saas"), 443, SAAS_SYNC)

    def _cloud_upload(self, t: int) -> dict[str, Any]:
        return self._outbound(t, self._workstation(), self._site("storage"), 443, CLOUD_UPLOAD)

    def _video_call(self, t: int) -> dict[str, Any]:
        site = self._site("video")
        if "teams" in site.hostname:
            port = self.rng.randint(3478, 3481)
        else:
            port = 8801 if "zoom" in site.hostname else 19305
        return self._outbound(t, self._workstation(), site, port, VIDEO_CALL)

    def _file_share(self, t: int) -> dict[str, Any]:
        return self._lateral(t, self._workstation(), self.servers["file"], 445, SMB)

    def _directory(self, t: int) -> dict[str, Any]:
        port, svc = _DC_SERVICES.pick(self.rng)
        return self._lateral(t, self._workstation(), self.servers["dc"], port, svc)

    def _mail_client(self, t: int) -> dict[str, Any]:
        port, svc = (993, IMAPS) if self.rng.random() < 0.8 else (587, SUBMISSION)
        return self._lateral(t, self._workstation(), self.servers["mail"], port, svc)

    def _intranet(self, t: int) -> dict[str, Any]:
        if self.rng.random() < 0.7:
            return self._lateral(t, self._workstation(), self.servers["web"], 443, HTTPS)
        return self._lateral(t, self._workstation(), self.servers["db"], 5432, POSTGRES)

    def _ssh_admin(self, t: int) -> dict[str, Any]:
        jump = self.servers["jump"]
        if self.rng.random() < 0.6:
            return self._lateral(t, self.rng.choice(self.admin_hosts), jump, 22, SSH)
        return self._lateral(t, jump, self.rng.choice(self.linux_servers), 22, SSH)

    def _dns_flow_client(self, t: int) -> dict[str, Any]:
        return self._lateral(t, self._workstation(), self.servers["dns"], 53, DNS)

    def _dns_flow_server(self, t: int) -> dict[str, Any]:
        resolver = self.servers["dns"]
        if self.rng.random() < 0.6:
            return self._lateral(t, self.rng.choice(self.linux_servers), resolver, 53, DNS)
        dst = endpoint(self.rng.choice(self.org.dns_forwarders), 53)
        return self._flow(t, self._from_host(resolver), dst, DNS, OUTBOUND)

    def _ntp_client(self, t: int) -> dict[str, Any]:
        return self._lateral(t, self._workstation(), self.servers["dc"], 123, NTP)

    def _ntp_server(self, t: int) -> dict[str, Any]:
        dc = self.servers["dc"]
        if self.rng.random() < 0.5:
            client = self.rng.choice(self.org.hosts)
            if client is not dc:
                return self._lateral(t, client, dc, 123, NTP)
        src = endpoint(dc.ip, 123, dc.hostname)
        return self._flow(t, src, self._to_site(self._site("ntp"), 123), NTP, OUTBOUND)

    def _telemetry(self, t: int) -> dict[str, Any]:
        return self._outbound(t, self._workstation(), self._site("telemetry"), 443, TELEMETRY)

    def _ocsp(self, t: int) -> dict[str, Any]:
        host = self._workstation() if self.rng.random() < 0.8 else self.rng.choice(self.org.hosts)
        return self._outbound(t, host, self._site("pki"), 80, OCSP)

    def _client_updates(self, t: int) -> dict[str, Any]:
        port, svc = (443, UPDATES) if self.rng.random() < 0.6 else (80, HTTP_UPDATES)
        return self._outbound(t, self._workstation(), self._site("update"), port, svc)

    def _server_updates(self, t: int) -> dict[str, Any]:
        port, svc = (443, UPDATES) if self.rng.random() < 0.4 else (80, HTTP_UPDATES)
        host = self.rng.choice(self.linux_servers)
        return self._outbound(t, host, self._site("update"), port, svc)

    def _inbound_web(self, t: int) -> dict[str, Any]:
        src = endpoint(self.rng.choice(self.org.web_clients), self.rng.randint(1024, 65535))
        return self._flow(t, src, self._to_host(self.servers["web"], 443), INBOUND_WEB, INBOUND)

    def _smtp_in(self, t: int) -> dict[str, Any]:
        src = endpoint(self.rng.choice(self.org.mail_peers), self.rng.randint(1024, 65535))
        return self._flow(t, src, self._to_host(self.servers["mail"], 25), SMTP, INBOUND)

    def _smtp_out(self, t: int) -> dict[str, Any]:
        dst = endpoint(self.rng.choice(self.org.mail_peers), 25)
        return self._flow(t, self._from_host(self.servers["mail"]), dst, SMTP, OUTBOUND)

    def _app_db(self, t: int) -> dict[str, Any]:
        return self._lateral(t, self.servers["web"], self.servers["db"], 5432, APP_DB)

    def _backup(self, t: int) -> dict[str, Any]:
        hour, _ = self.org.local_hour_and_weekday(t)
        if not 1 <= hour < 5:  # the nightly backup window
            return self._app_db(t)
        return self._lateral(t, self.servers["db"], self.servers["file"], 445, BACKUP)

    def _server_directory(self, t: int) -> dict[str, Any]:
        port, svc = _SERVER_DC_SERVICES.pick(self.rng)
        server = self.rng.choice(self.linux_servers)
        return self._lateral(t, server, self.servers["dc"], port, svc)

    def _monitoring(self, t: int) -> dict[str, Any]:
        target = self.rng.choice(self.linux_servers)
        jump = self.servers["jump"]
        if target is jump:
            target = self.servers["db"]
        return self._lateral(t, jump, target, 22, MONITOR_SSH)

    # --- DNS activity ----------------------------------------------------------------------
    def _dns(
        self,
        t: int,
        client: Host,
        hostname: str,
        qtype: str,
        *,
        answers: list[dict[str, Any]] | None = None,
        rcode: int = NOERROR,
    ) -> dict[str, Any]:
        rng = self.rng
        rtt = rng.randint(0, 2) if rng.random() < 0.6 else self._lognormal(25, 0.7)
        return self.factory.dns(
            time_ms=t,
            src_ip=client.ip,
            src_port=self._port(client),
            resolver_ip=self.servers["dns"].ip,
            hostname=hostname,
            query_type=qtype,
            rcode_id=rcode,
            answers=answers or [],
            rtt_ms=rtt,
        )

    def _ttl(self, ttl: int) -> int:
        # A caching resolver answers with what is left of the record's TTL.
        return ttl if self.rng.random() < 0.3 else self.rng.randint(1, ttl)

    def _site_lookup(self, t: int, client: Host, site: Site) -> dict[str, Any]:
        rng = self.rng
        qtype = _SITE_QUERY_TYPES.pick(rng)
        if rng.random() < 0.005:
            return self._dns(t, client, site.hostname, qtype, rcode=SERVFAIL)
        ttl = self._ttl(site.ttl)
        answers = []
        if site.cname and qtype in ("A", "AAAA", "CNAME"):
            answers.append(dns_answer(site.cname, "CNAME", ttl))
        if qtype == "A":
            answers.extend(dns_answer(ip, "A", ttl) for ip in site.ips)
        elif qtype == "AAAA":
            answers.extend(dns_answer(ip, "AAAA", ttl) for ip in site.ipv6)
        elif qtype == "TXT":
            answers.append(
                dns_answer(f"v=spf1 include:_spf.{_zone(site.hostname)} ~all", "TXT", ttl)
            )
        return self._dns(t, client, site.hostname, qtype, answers=answers)

    def _lookup_site(self, t: int) -> dict[str, Any]:
        kind = _LOOKUP_KINDS.pick(self.rng)
        return self._site_lookup(t, self._workstation(), self._site(kind))

    def _lookup_background_site(self, t: int) -> dict[str, Any]:
        kind = _BACKGROUND_LOOKUP_KINDS.pick(self.rng)
        client = self._workstation() if kind == "telemetry" else self.rng.choice(self.org.hosts)
        return self._site_lookup(t, client, self._site(kind))

    def _lookup_internal(self, t: int) -> dict[str, Any]:
        rng = self.rng
        client = self._workstation() if rng.random() < 0.7 else rng.choice(self.linux_servers)
        pool = self.org.hosts if rng.random() < 0.2 else self.server_hosts
        target = rng.choice(pool)
        if rng.random() < 0.8:
            answers = [dns_answer(target.ip, "A", self._ttl(1200))]
            return self._dns(t, client, target.hostname, "A", answers=answers)
        return self._dns(t, client, target.hostname, "AAAA")

    def _lookup_nx(self, t: int) -> dict[str, Any]:
        rng = self.rng
        client = self._workstation()
        style = rng.randrange(3)
        if style == 0:  # Windows probing for proxy and tunnel configuration
            name = f"{rng.choice(('wpad', 'isatap', 'wpad.lan'))}.{self.org.domain}"
        elif style == 1:  # the search suffix appended to an external name
            name = f"{self._site('web').hostname}.{self.org.domain}"
        else:  # a typo
            name = _typo(rng, self._site("web").hostname)
        qtype = "A" if rng.random() < 0.75 else "AAAA"
        return self._dns(t, client, name, qtype, rcode=NXDOMAIN)

    def _lookup_mail(self, t: int) -> dict[str, Any]:
        rng = self.rng
        mail_host = self.servers["mail"]
        zone = self._site("mail").hostname
        qtype = _MAIL_QUERY_TYPES.pick(rng)
        ttl = self._ttl(3600)
        if qtype == "MX":
            answers = [dns_answer(f"{10 * (i + 1)} mx{i + 1}.{zone}", "MX", ttl) for i in range(2)]
            return self._dns(t, mail_host, zone, "MX", answers=answers)
        if qtype == "TXT":
            answers = [dns_answer(f"v=spf1 include:_spf.{zone} ~all", "TXT", ttl)]
            return self._dns(t, mail_host, zone, "TXT", answers=answers)
        if qtype == "PTR":  # reverse lookup of a connecting mail server
            peer = rng.choice(self.org.mail_peers)
            name = ".".join(reversed(peer.split("."))) + ".in-addr.arpa"
            answers = [dns_answer(f"mail-{peer.replace('.', '-')}.{zone}", "PTR", ttl)]
            return self._dns(t, mail_host, name, "PTR", answers=answers)
        if qtype == "DNSBL":  # is the sender on a block list? Listed means 127.0.0.x
            peer = rng.choice(self.smtp_senders)
            name = ".".join(reversed(peer.split("."))) + ".zen.spamhaus.org"
            if rng.random() < 0.9:
                return self._dns(t, mail_host, name, "A", rcode=NXDOMAIN)
            answers = [dns_answer("127.0.0.2", "A", self._ttl(300))]
            return self._dns(t, mail_host, name, "A", answers=answers)
        answers = [dns_answer(rng.choice(self.org.mail_peers), "A", ttl)]
        return self._dns(t, mail_host, f"mx1.{zone}", "A", answers=answers)

    def _lookup_dc_locator(self, t: int) -> dict[str, Any]:
        """Windows machines find their domain controller through SRV records."""
        rng = self.rng
        domain = self.org.domain
        name = rng.choice(
            (
                f"_ldap._tcp.dc._msdcs.{domain}",
                f"_kerberos._tcp.dc._msdcs.{domain}",
                f"_ldap._tcp.Default-First-Site-Name._sites.dc._msdcs.{domain}",
                f"_ldap._tcp.{domain}",
            )
        )
        port = 88 if name.startswith("_kerberos") else 389
        dc = self.servers["dc"]
        answers = [dns_answer(f"0 100 {port} {dc.hostname}", "SRV", self._ttl(600))]
        host = self.rng.choice(self.windows_hosts)
        return self._dns(t, host, name, "SRV", answers=answers)

    def _lookup_office_probe(self, t: int) -> dict[str, Any]:
        """Office clients measure latency with per-request random names (benign entropy)."""
        probe = self.factory.uid()
        answers = [dns_answer(ip, "A", self._ttl(60)) for ip in self.office.ips]
        name = f"{probe}.fp.measure.office.com"
        return self._dns(t, self._workstation(), name, "A", answers=answers)

    # --- authentication --------------------------------------------------------------------
    def _logon(
        self,
        t: int,
        user: User,
        product: Product,
        src: dict[str, Any],
        dst_host: Host | Site,
        *,
        auth_protocol_id: int,
        logon_type_id: int,
        service: str,
        is_mfa: bool = False,
        is_remote: bool = True,
        auth_protocol: str | None = None,
        failure_rate: float = BENIGN_AUTH_FAILURE_RATE,
        failure_detail: str = "Unknown user name or bad password.",
        activity_id: int = 1,
    ) -> dict[str, Any]:
        success = self.rng.random() >= failure_rate
        if isinstance(dst_host, Host):
            dst = endpoint(dst_host.ip, hostname=dst_host.hostname)
        else:
            dst = endpoint(self.rng.choice(dst_host.ips), hostname=dst_host.hostname)
        return self.factory.authentication(
            time_ms=t,
            product=product,
            user_name=user.name,
            user_uid=user.uid,
            user_type_id=user.type_id,
            src=src,
            dst=dst,
            success=success,
            auth_protocol_id=auth_protocol_id,
            auth_protocol=auth_protocol,
            logon_type_id=logon_type_id,
            is_mfa=is_mfa and success,
            is_remote=is_remote,
            service=service,
            activity_id=activity_id,
            status_detail=None if success else failure_detail,
        )

    def _owner(self, host: Host) -> User:
        return self.org.user(host.owner or "")

    def _workstation_logon(self, t: int) -> dict[str, Any]:
        host = self.rng.choice(self.windows_hosts)
        logon_type = _WORKSTATION_LOGON_TYPES.pick(self.rng)
        return self._logon(
            t,
            self._owner(host),
            WINDOWS_SECURITY,
            endpoint(host.ip, hostname=host.hostname),
            host,
            auth_protocol_id=2,
            logon_type_id=logon_type,
            service="Windows Logon",
            is_remote=False,
            is_mfa=self.rng.random() < 0.2,
        )

    def _workstation_logoff(self, t: int) -> dict[str, Any]:
        host = self.rng.choice(self.windows_hosts)
        return self._logon(
            t,
            self._owner(host),
            WINDOWS_SECURITY,
            endpoint(host.ip, hostname=host.hostname),
            host,
            auth_protocol_id=2,
            logon_type_id=2,
            service="Windows Logon",
            is_remote=False,
            failure_rate=0.0,
            activity_id=2,
        )

    def _file_server_logon(self, t: int) -> dict[str, Any]:
        host = self._workstation()
        return self._logon(
            t,
            self._owner(host),
            WINDOWS_SECURITY,
            endpoint(host.ip, hostname=host.hostname),
            self.servers["file"],
            auth_protocol_id=2,
            logon_type_id=3,
            service="cifs",
            failure_rate=0.005,
        )

    def _service_ticket(self, t: int) -> dict[str, Any]:
        host = self._workstation()
        target = self.rng.choice((self.servers["file"], self.servers["web"], self.servers["db"]))
        service = {"file": "cifs", "web": "HTTP", "db": "postgres"}[target.role]
        return self._logon(
            t,
            self._owner(host),
            WINDOWS_SECURITY,
            endpoint(host.ip, hostname=host.hostname),
            self.servers["dc"],
            auth_protocol_id=2,
            logon_type_id=3,
            service=f"{service}/{target.hostname}",
            failure_rate=0.005,
            activity_id=4,
        )

    def _sso_logon(self, t: int) -> dict[str, Any]:
        rng = self.rng
        user = rng.choice(self.org.users)
        # Remote workers sign in from home outside office hours, and now and then by day.
        at_home = not self.org.is_working_hours(t) or rng.random() < 0.1
        src_ip = user.home_ip if at_home and user.home_ip else self.org.egress_ip
        idp = self.org.site_groups["idp"].items[0]
        return self._logon(
            t,
            user,
            OKTA,
            endpoint(src_ip),
            idp,
            auth_protocol_id=5 if rng.random() < 0.6 else 4,
            logon_type_id=3,
            service=rng.choice(_SSO_APPS),
            is_mfa=rng.random() < 0.7,
            failure_detail="INVALID_CREDENTIALS",
        )

    def _vpn_logon(self, t: int) -> dict[str, Any]:
        user = self.rng.choice(self.remote_workers)
        return self._logon(
            t,
            user,
            OPENVPN,
            endpoint(user.home_ip or "", self.rng.randint(1024, 65535)),
            self.servers["vpn"],
            auth_protocol_id=5,
            logon_type_id=3,
            service="vpn",
            is_mfa=True,
            failure_detail="Authentication failed",
        )

    def _ssh_logon(self, t: int) -> dict[str, Any]:
        rng = self.rng
        admin = rng.choice(self.org.admins)
        jump = self.servers["jump"]
        if rng.random() < 0.6:
            src_host, dst_host = rng.choice(self.org.workstations_of(admin.name)), jump
        else:
            src_host, dst_host = jump, rng.choice(self.linux_servers)
        return self._logon(
            t,
            admin,
            OPENSSH,
            endpoint(src_host.ip, self._port(src_host), src_host.hostname),
            dst_host,
            auth_protocol_id=99,
            auth_protocol="publickey",
            logon_type_id=10,
            service="sshd",
            failure_detail="Failed publickey",
        )

    def _service_account_logon(self, t: int) -> dict[str, Any]:
        account = self.rng.choice(self.org.service_accounts)
        home = {"svc_backup": "file", "svc_sql": "db", "svc_web": "web", "svc_monitor": "jump"}
        host = self.servers[home[account.name]]
        return self._logon(
            t,
            account,
            WINDOWS_SECURITY,
            endpoint(host.ip, hostname=host.hostname),
            self.servers["dc"],
            auth_protocol_id=2 if self.rng.random() < 0.85 else 1,
            logon_type_id=self.rng.choice((3, 4, 5)),
            service="krbtgt",
            failure_rate=0.002,
        )

    def _machine_account_logon(self, t: int) -> dict[str, Any]:
        host = self._workstation()
        return self._logon(
            t,
            self.machine_accounts[host.hostname],
            WINDOWS_SECURITY,
            endpoint(host.ip, hostname=host.hostname),
            self.servers["dc"],
            auth_protocol_id=2,
            logon_type_id=3,
            service="krbtgt",
            failure_rate=0.0,
        )

    def _monitor_logon(self, t: int) -> dict[str, Any]:
        jump = self.servers["jump"]
        target = self.rng.choice(self.linux_servers)
        if target is jump:
            target = self.servers["db"]
        return self._logon(
            t,
            self.org.user("svc_monitor"),
            OPENSSH,
            endpoint(jump.ip, self._port(jump), jump.hostname),
            target,
            auth_protocol_id=99,
            auth_protocol="publickey",
            logon_type_id=10,
            service="sshd",
            failure_rate=0.0,
        )


def _zone(hostname: str) -> str:
    """The registrable-looking zone of a name: its last two labels."""
    return ".".join(hostname.split(".")[-2:])


def _typo(rng: random.Random, hostname: str) -> str:
    """``hostname`` with one character of its first long label dropped or doubled."""
    labels = hostname.split(".")
    i = max(range(len(labels) - 1), key=lambda k: len(labels[k]))
    label = labels[i]
    pos = rng.randrange(len(label))
    if len(label) > 3 and rng.random() < 0.5:
        labels[i] = label[:pos] + label[pos + 1 :]
    else:
        labels[i] = label[:pos] + label[pos] + label[pos:]
    return ".".join(labels)
