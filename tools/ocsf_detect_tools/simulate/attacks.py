"""Attack injectors: labeled malicious events placed in a few episodes in time.

The detector scores each event on its own, so every injected event carries its attack in
fields of that one event (ports, sizes, status, hour, names, protocols), as the real
attack would leave it in a Zeek or logon record:

- ``port_scan``: a compromised workstation (or an external scanner) sends single SYNs to
  many ports on a few hosts: zero bytes, one packet, S0/REJ, sub-millisecond, in bursts.
- ``data_exfiltration``: a workstation uploads 50 MB - 2 GB per flow to a rare public
  address, mostly outside working hours; bytes out dwarf bytes in.
- ``brute_force``: password guesses without MFA against the VPN, the exposed SSH jump
  host (from rare public addresses) or the DC (password spraying from one workstation).
- ``beaconing``: an implant calls a rare address on an unusual port at a fixed interval,
  day and night, with near-constant small payloads.
- ``dns_tunnelling``: long high-entropy labels under one rare domain, TXT/CNAME/NULL
  queries, with TXT answers or NXDomain.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable
from typing import Any, Final

from ocsf_detect_tools.simulate.organisation import Host, Organisation, Weighted, public_ip
from ocsf_detect_tools.simulate.records import (
    INBOUND,
    LATERAL,
    NOERROR,
    NXDOMAIN,
    OPENSSH,
    OPENVPN,
    OUTBOUND,
    WINDOWS_SECURITY,
    EventFactory,
    dns_answer,
    endpoint,
    tcp_packets,
)

ATTACK_TYPES: Final = (
    "port_scan",
    "data_exfiltration",
    "brute_force",
    "beaconing",
    "dns_tunnelling",
)
# Share of the attack budget per type; every type gets at least a tenth.
_SHARES: Final = {
    "port_scan": 0.26,
    "data_exfiltration": 0.12,
    "brute_force": 0.24,
    "beaconing": 0.16,
    "dns_tunnelling": 0.22,
}

# /16 prefixes of hosting providers that attackers rent; none of the organisation's
# destinations live there, so their addresses are rare in normal traffic.
_ATTACKER_PREFIXES: Final = (
    (45, 134), (45, 155), (91, 240), (185, 220), (193, 142), (194, 26), (5, 188),
    (176, 111), (89, 248), (141, 98), (162, 142),
)  # fmt: skip
_RARE_TLDS: Final = ("xyz", "top", "info", "online", "club", "site", "icu")
_SCAN_COMMON_PORTS: Final = (
    21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 993, 995, 1433, 1723, 3306,
    3389, 5900, 8080,
)  # fmt: skip
# SYN to a filtered port (no answer), to a closed port (RST), to an open one (SYN-ACK, RST).
_SCAN_STATES: Final = Weighted(("S0", "REJ", "RSTO"), (55, 40, 5))
_TUNNEL_QUERY_TYPES: Final = Weighted(("TXT", "CNAME", "NULL"), (55, 30, 15))
_EXFIL_PORTS: Final = (8080, 8000, 2222, 9443, 4433, 7000)
_BEACON_PORTS: Final = (8443, 4444, 1337, 9001, 50050, 31337)
_BEACON_INTERVALS_S: Final = (30, 60, 120, 300, 600)
_SSH_GUESSES: Final = (
    "root", "admin", "ubuntu", "oracle", "test", "postgres", "git", "user", "deploy", "pi",
    "ftpuser", "support",
)  # fmt: skip
_VPN_GUESSES: Final = ("admin", "vpn", "test", "administrator", "guest", "scanner", "backup")
_BASE32: Final = string.ascii_lowercase + "234567"
_HEX: Final = "0123456789abcdef"
_BASE64: Final = string.ascii_letters + string.digits + "+/"
_NULL_SID: Final = "S-1-0-0"  # what Windows and our IdP log for an account that does not exist


def allocate(n_attack: int) -> dict[str, int]:
    """Split ``n_attack`` events over the attack types (largest remainder, exact total).

    >>> allocate(100)
    {'port_scan': 26, 'data_exfiltration': 12, 'brute_force': 24, 'beaconing': 16, \
'dns_tunnelling': 22}
    """
    raw = {kind: n_attack * _SHARES[kind] for kind in ATTACK_TYPES}
    counts = {kind: int(value) for kind, value in raw.items()}
    left = n_attack - sum(counts.values())
    by_remainder = sorted(ATTACK_TYPES, key=lambda k: (counts[k] - raw[k], ATTACK_TYPES.index(k)))
    for kind in by_remainder[:left]:
        counts[kind] += 1
    return counts


def inject_attacks(
    org: Organisation,
    rng: random.Random,
    *,
    factory: EventFactory,
    start_ms: int,
    end_ms: int,
    n_attack: int,
) -> list[tuple[dict[str, Any], str]]:
    """Exactly ``n_attack`` malicious events in ``[start_ms, end_ms)``, each with its type."""
    attacker = _Attacker(org, rng, factory, start_ms, end_ms)
    injectors: dict[str, Callable[[int, int], list[dict[str, Any]]]] = {
        "port_scan": attacker.port_scan,
        "data_exfiltration": attacker.data_exfiltration,
        "brute_force": attacker.brute_force,
        "beaconing": attacker.beaconing,
        "dns_tunnelling": attacker.dns_tunnelling,
    }
    out: list[tuple[dict[str, Any], str]] = []
    for kind, count in allocate(n_attack).items():
        for episode, size in enumerate(_episode_sizes(rng, count)):
            out.extend((event, kind) for event in injectors[kind](size, episode))
    return out


def _episode_sizes(rng: random.Random, count: int) -> list[int]:
    """A few episodes per type: one for a handful of events, up to three for many."""
    if count <= 0:
        return []
    n = 1 if count < 12 else 2 if count < 60 else 3
    weights = [rng.uniform(1.0, 2.0) for _ in range(n)]
    sizes = [max(1, int(count * w / sum(weights))) for w in weights[:-1]]
    return [*sizes, count - sum(sizes)]


class _Attacker:
    """Builds the events of one episode at a time; state is the shared random source."""

    def __init__(
        self,
        org: Organisation,
        rng: random.Random,
        factory: EventFactory,
        start_ms: int,
        end_ms: int,
    ) -> None:
        self.org = org
        self.rng = rng
        self.factory = factory
        self.start = start_ms
        self.end = end_ms
        self.taken = set(org.known_ips)

    # --- shared helpers --------------------------------------------------------------------
    def _rare_ip(self) -> str:
        return public_ip(self.rng, _ATTACKER_PREFIXES, self.taken)

    def _rare_domain(self) -> str:
        label = "".join(self.rng.choices(string.ascii_lowercase, k=self.rng.randint(6, 10)))
        return f"{label}.{self.rng.choice(_RARE_TLDS)}"

    def _start_time(self, span_ms: int, episode: int, off_hours: float | None) -> int:
        """Start of an episode lasting ``span_ms``: outside working hours with probability
        ``off_hours``, else inside them (when the window has both); anywhere when None.
        The first episode of a type always takes the more likely side."""
        rng = self.rng
        latest = max(self.start, self.end - span_ms - 1)
        t = rng.randint(self.start, latest)
        if off_hours is None:
            return t
        want_off_hours = off_hours >= 0.5 if episode == 0 else rng.random() < off_hours
        for _ in range(500):
            if self.org.is_working_hours(t) != want_off_hours:
                break
            t = rng.randint(self.start, latest)
        return t

    def _clamp(self, t: float) -> int:
        return min(max(int(t), self.start), self.end - 1)

    def _lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(sigma * self.rng.gauss(0.0, 1.0))

    # --- port scan -------------------------------------------------------------------------
    def port_scan(self, n: int, episode: int) -> list[dict[str, Any]]:
        rng, org = self.rng, self.org
        if rng.random() < 0.3:  # an internet scanner probing what the DMZ exposes
            src_ip, src_host = self._rare_ip(), None
            targets = [org.servers["web"], org.servers["vpn"], org.servers["mail"]]
            direction = INBOUND
        else:  # a compromised workstation mapping the network
            scanner = rng.choice(org.workstations)
            src_ip, src_host = scanner.ip, scanner.hostname
            candidates = [h for h in org.hosts if h is not scanner]
            targets = rng.sample(candidates, k=rng.randint(3, 8))
            direction = LATERAL
        src_port = rng.randint(40000, 65000)  # SYN scanners reuse one source port
        t = float(self._start_time(n * 20, episode, off_hours=0.6))
        events = []
        for i in range(n):
            t += rng.expovariate(1 / 15)  # ~65 probes a second
            target = targets[i % len(targets)]
            status = _SCAN_STATES.pick(rng)
            packets_out, packets_in, history, duration = {
                "S0": (1, 0, "S", 0),
                "REJ": (1, 1, "Sr", rng.randint(0, 1)),
                "RSTO": (2, 1, "ShR", rng.randint(0, 2)),
            }[status]
            events.append(
                self.factory.network(
                    time_ms=self._clamp(t),
                    src=endpoint(src_ip, src_port, src_host),
                    dst=endpoint(target.ip, self._scan_port(), target.hostname),
                    protocol="tcp",
                    direction_id=direction,
                    status_code=status,
                    bytes_out=0,
                    bytes_in=0,
                    packets_out=packets_out,
                    packets_in=packets_in,
                    duration_ms=duration,
                    history=history,
                )
            )
        return events

    def _scan_port(self) -> int:
        r = self.rng.random()
        if r < 0.25:
            return self.rng.choice(_SCAN_COMMON_PORTS)
        if r < 0.7:
            return self.rng.randint(1, 10000)
        return self.rng.randint(1, 65535)

    # --- data exfiltration -----------------------------------------------------------------
    def data_exfiltration(self, n: int, episode: int) -> list[dict[str, Any]]:
        rng = self.rng
        host = rng.choice(self.org.workstations)
        dst_ip = self._rare_ip()
        port = 443 if rng.random() < 0.6 else rng.choice(_EXFIL_PORTS)
        hostname = f"upload.{self._rare_domain()}" if rng.random() < 0.5 else None
        t = float(self._start_time(n * 240_000, episode, off_hours=0.65))
        events = []
        for _ in range(n):
            bytes_out = int(math.exp(rng.uniform(math.log(50e6), math.log(2e9))))
            bytes_in = int(self._lognormal(30_000, 0.8))
            throughput = rng.uniform(1_500, 15_000)  # bytes per ms: 12-120 Mbit/s uplink
            duration = int(bytes_out / throughput)
            status = "SF" if rng.random() < 0.85 else "RSTO"
            packets_out, packets_in = tcp_packets(bytes_out, bytes_in)
            events.append(
                self.factory.network(
                    time_ms=self._clamp(t),
                    src=endpoint(host.ip, rng.randint(*host.ephemeral_ports), host.hostname),
                    dst=endpoint(dst_ip, port, hostname),
                    protocol="tcp",
                    direction_id=OUTBOUND,
                    status_code=status,
                    bytes_out=bytes_out,
                    bytes_in=bytes_in,
                    packets_out=packets_out,
                    packets_in=packets_in,
                    duration_ms=duration,
                    history="ShADadFf" if status == "SF" else "ShADadR",
                    app_name="ssl" if port == 443 else None,
                )
            )
            t += duration + rng.uniform(10_000, 120_000)
        return events

    # --- brute force -----------------------------------------------------------------------
    def brute_force(self, n: int, episode: int) -> list[dict[str, Any]]:
        rng, org = self.rng, self.org
        target = rng.choices(("vpn", "ssh", "spray"), weights=(40, 35, 25))[0]
        real_users = [u.name for u in org.users]
        if target == "vpn":
            sources = [endpoint(self._rare_ip()) for _ in range(rng.randint(1, 3))]
            guesses = [*_VPN_GUESSES, *real_users]
            interval_ms = 700.0
        elif target == "ssh":
            sources = [endpoint(self._rare_ip())]
            guesses = [*_SSH_GUESSES, *(a.name for a in org.admins)]
            interval_ms = 500.0
        else:  # password spraying: every account, one password at a time, slowly
            host = rng.choice(org.workstations)
            sources = [endpoint(host.ip, hostname=host.hostname)]
            guesses = [*real_users, org.builtin_admin.name]
            interval_ms = 3000.0
        compromised = rng.random() < 0.3  # the last guess of the episode works
        t = float(self._start_time(int(n * interval_ms * 1.5), episode, off_hours=0.7))
        events = []
        for i in range(n):
            t += self._lognormal(interval_ms, 0.6)
            name = guesses[i % len(guesses)] if target == "spray" else rng.choice(guesses)
            success = compromised and i == n - 1 and target != "ssh"
            src = dict(rng.choice(sources))
            if target != "spray":
                src["port"] = rng.randint(1024, 65535)
            events.append(self._guess(self._clamp(t), target, name, src, success))
        return events

    def _guess(
        self, t: int, target: str, name: str, src: dict[str, Any], success: bool
    ) -> dict[str, Any]:
        org = self.org
        try:
            account = org.user(name)
            uid, type_id = account.uid, account.type_id
        except KeyError:
            uid, type_id = _NULL_SID, 0
            success = False
        if target == "vpn":
            server, product, protocol_id, protocol = org.servers["vpn"], OPENVPN, 7, None
            logon_type, service, detail = 3, "vpn", "Authentication failed"
        elif target == "ssh":
            server, product, protocol_id, protocol = org.servers["jump"], OPENSSH, 99, "password"
            logon_type, service = 10, "sshd"
            detail = "Failed password" if type_id else "Invalid user"
        else:
            server, product, protocol_id, protocol = org.servers["dc"], WINDOWS_SECURITY, 1, None
            logon_type, service, detail = 3, "NtLmSsp", "Unknown user name or bad password."
        return self.factory.authentication(
            time_ms=t,
            product=product,
            user_name=name,
            user_uid=uid,
            user_type_id=type_id,
            src=src,
            dst=endpoint(server.ip, hostname=server.hostname),
            success=success,
            auth_protocol_id=protocol_id,
            auth_protocol=protocol,
            logon_type_id=logon_type,
            is_mfa=False,
            is_remote=True,
            service=service,
            status_detail=None if success else detail,
        )

    # --- beaconing -------------------------------------------------------------------------
    def beaconing(self, n: int, episode: int) -> list[dict[str, Any]]:
        rng = self.rng
        host: Host = rng.choice(self.org.workstations)
        c2_ip = self._rare_ip()
        port = rng.choice(_BEACON_PORTS)
        interval = rng.choice(_BEACON_INTERVALS_S) * 1000.0
        interval = min(interval, 0.9 * (self.end - self.start) / max(n, 1))
        jitter = rng.uniform(0.0, 0.1) * interval
        base_out, base_in = rng.randint(180, 520), rng.randint(40, 160)
        t0 = self._start_time(int(n * interval), episode, off_hours=None)
        src_port = rng.randint(*host.ephemeral_ports)
        events = []
        for i in range(n):
            t = t0 + i * interval + rng.uniform(-jitter, jitter)
            bytes_out = base_out + rng.randint(-6, 6)
            if rng.random() < 0.04:  # now and then the implant receives a task
                bytes_in = int(self._lognormal(8000, 0.8))
            else:
                bytes_in = base_in + rng.randint(-4, 4)
            src_port = src_port + 1 if src_port < host.ephemeral_ports[1] else 49152
            packets_out, packets_in = tcp_packets(bytes_out, bytes_in)
            events.append(
                self.factory.network(
                    time_ms=self._clamp(t),
                    src=endpoint(host.ip, src_port, host.hostname),
                    dst=endpoint(c2_ip, port),
                    protocol="tcp",
                    direction_id=OUTBOUND,
                    status_code="SF",
                    bytes_out=bytes_out,
                    bytes_in=bytes_in,
                    packets_out=packets_out,
                    packets_in=packets_in,
                    duration_ms=int(self._lognormal(250, 0.4)),
                    history="ShADadFf",
                    app_name="ssl" if port == 8443 else None,
                )
            )
        return events

    # --- DNS tunnelling --------------------------------------------------------------------
    def dns_tunnelling(self, n: int, episode: int) -> list[dict[str, Any]]:
        rng = self.rng
        host = rng.choice(self.org.workstations)
        resolver = self.org.servers["dns"].ip
        domain = self._rare_domain()
        alphabet = _BASE32 if rng.random() < 0.6 else _HEX
        session = f"{rng.getrandbits(16):04x}"
        t = float(self._start_time(n * 400, episode, off_hours=0.4))
        events = []
        for i in range(n):
            t += self._lognormal(350, 0.7)
            labels = [
                "".join(rng.choices(alphabet, k=rng.randint(40, 60)))
                for _ in range(rng.randint(2, 4))
            ]
            suffix = f"{i:x}{session}.{domain}"
            while len(labels) > 1 and len(".".join([*labels, suffix])) > 253:
                labels.pop()
            hostname = ".".join([*labels, suffix])
            qtype = _TUNNEL_QUERY_TYPES.pick(rng)
            rcode, answers = NXDOMAIN, []
            if rng.random() < (0.7 if qtype == "TXT" else 0.6):
                rcode = NOERROR
                answers = [self._tunnel_answer(qtype, alphabet, domain)]
            events.append(
                self.factory.dns(
                    time_ms=self._clamp(t),
                    src_ip=host.ip,
                    src_port=rng.randint(*host.ephemeral_ports),
                    resolver_ip=resolver,
                    hostname=hostname,
                    query_type=qtype,
                    rcode_id=rcode,
                    answers=answers,
                    rtt_ms=int(self._lognormal(45, 0.5)),
                )
            )
        return events

    def _tunnel_answer(self, qtype: str, alphabet: str, domain: str) -> dict[str, Any]:
        rng = self.rng
        ttl = rng.choice((0, 1))
        if qtype == "TXT":
            return dns_answer("".join(rng.choices(_BASE64, k=rng.randint(40, 220))), "TXT", ttl)
        if qtype == "CNAME":
            label = "".join(rng.choices(alphabet, k=rng.randint(30, 50)))
            return dns_answer(f"{label}.{domain}", "CNAME", ttl)
        return dns_answer("".join(rng.choices(_HEX, k=rng.randint(64, 200))), "NULL", ttl)
