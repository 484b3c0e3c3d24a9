"""The simulated organisation: who and what produces the traffic.

One small company: about 40 workstations in ``10.10.0.0/16`` (each with one owner), 8
servers, 25 people (a few of them admins), service accounts, about 160 popular external
destinations with DNS names, and the working hours that shape when people are active.

The organisation depends only on ``org_seed``, never on the traffic seed, so a training
baseline and a live set generated with different traffic seeds describe the same hosts,
users and names. ``build_organisation`` is cached: it is built once per process and seed.
"""

from __future__ import annotations

import ipaddress
import random
from bisect import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from typing import Final, Generic, TypeVar

T = TypeVar("T")

DOMAIN: Final = "corp.example"
INTERNAL_NETWORK: Final = ipaddress.ip_network("10.10.0.0/16")
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS

# Share of a fully active working hour that the always-on servers keep up day and night.
BACKGROUND_INTENSITY: Final = 0.06
# People's activity per local hour on a weekday (1.0 = the busiest hours); 08:00-19:00
# carries most of it, with a lunch dip and a few people working late.
_WEEKDAY_PROFILE: Final = (
    0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.03, 0.25,
    0.80, 1.00, 1.00, 1.00, 0.75, 1.00, 1.00, 1.00,
    0.95, 0.80, 0.55, 0.20, 0.10, 0.06, 0.03, 0.02,
)  # fmt: skip
_WEEKEND_DAY: Final = 0.06
_WEEKEND_NIGHT: Final = 0.01
_EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday (Monday = 0)

# Popular external destinations by kind, most visited first within a kind.
SITE_CATALOGUE: Final[Mapping[str, tuple[str, ...]]] = {
    "web": (
        "www.google.com", "www.youtube.com", "en.wikipedia.org", "www.linkedin.com",
        "www.bing.com", "www.reddit.com", "stackoverflow.com", "www.amazon.com",
        "www.bbc.co.uk", "www.nytimes.com", "www.theguardian.com", "www.reuters.com",
        "news.ycombinator.com", "www.cnn.com", "www.facebook.com", "www.instagram.com",
        "x.com", "www.microsoft.com", "learn.microsoft.com", "www.apple.com",
        "developer.mozilla.org", "docs.python.org", "pypi.org", "www.npmjs.com", "medium.com",
        "www.bloomberg.com", "www.ft.com", "www.economist.com", "arstechnica.com",
        "www.theverge.com", "www.wired.com", "www.booking.com", "www.ebay.com",
        "www.paypal.com", "www.imdb.com", "weather.com", "duckduckgo.com", "www.yahoo.com",
        "www.twitch.tv", "open.spotify.com", "www.netflix.com", "www.zdnet.com",
        "techcrunch.com", "www.indeed.com", "www.glassdoor.com", "maps.google.com",
        "github.com", "gitlab.com",
    ),
    "cdn": (
        "www.gstatic.com", "fonts.googleapis.com", "fonts.gstatic.com", "i.ytimg.com",
        "ajax.googleapis.com", "cdn.jsdelivr.net", "cdnjs.cloudflare.com",
        "static.xx.fbcdn.net", "abs.twimg.com", "upload.wikimedia.org", "use.typekit.net",
        "unpkg.com", "cdn.segment.com", "assets.adobedtm.com", "c.s-microsoft.com",
        "static.licdn.com", "media.licdn.com", "i.imgur.com", "secure.gravatar.com",
        "d3e54v103j8qbb.cloudfront.net", "www.googletagmanager.com",
        "www.google-analytics.com", "static.cloudflareinsights.com", "yt3.ggpht.com",
        "a.nel.cloudflare.com",
    ),
    "saas": (
        "outlook.office365.com", "login.microsoftonline.com", "graph.microsoft.com",
        "teams.microsoft.com", "corp-example.sharepoint.com", "corp-example-my.sharepoint.com",
        "slack.com", "app.slack.com", "wss-primary.slack.com", "api.github.com",
        "objects.githubusercontent.com", "raw.githubusercontent.com",
        "corp-example.atlassian.net", "api.atlassian.com", "www.notion.so", "app.asana.com",
        "mail.google.com", "docs.google.com", "calendar.google.com", "accounts.google.com",
        "app.hubspot.com", "corp-example.my.salesforce.com", "zoom.us",
        "console.aws.amazon.com", "signin.aws.amazon.com", "portal.azure.com",
        "www.figma.com", "app.datadoghq.com", "api.openai.com", "www.docusign.net",
    ),
    "storage": (
        "www.dropbox.com", "content.dropboxapi.com", "onedrive.live.com", "drive.google.com",
        "upload.box.com", "app.box.com", "s3.amazonaws.com", "wetransfer.com",
    ),
    "video": (
        "worldaz.tr.teams.microsoft.com", "euaz.tr.teams.microsoft.com",
        "zoomfr130mmr.fr.zoom.us", "meet.google.com",
    ),
    "update": (
        "ctldl.windowsupdate.com", "download.windowsupdate.com", "fe2.update.microsoft.com",
        "dl.delivery.mp.microsoft.com", "definitionupdates.microsoft.com",
        "archive.ubuntu.com", "security.ubuntu.com", "deb.debian.org", "swcdn.apple.com",
        "updates.cdn-apple.com", "dl.google.com", "update.googleapis.com",
        "download.mozilla.org", "packages.microsoft.com",
    ),
    "telemetry": (
        "v10.events.data.microsoft.com", "settings-win.data.microsoft.com",
        "self.events.data.microsoft.com", "browser.events.data.msn.com",
        "watson.telemetry.microsoft.com", "incoming.telemetry.mozilla.org",
        "firefox.settings.services.mozilla.com", "push.services.mozilla.com",
        "clients4.google.com", "safebrowsing.googleapis.com",
        "optimizationguide-pa.googleapis.com", "edge.microsoft.com", "config.edge.skype.com",
        "api.segment.io",
    ),
    "pki": (
        "ocsp.digicert.com", "crl3.digicert.com", "ocsp.pki.goog", "r10.o.lencr.org",
        "ocsp.sectigo.com", "ocsp.globalsign.com",
    ),
    "mail": (
        "gmail.com", "outlook.com", "yahoo.com", "icloud.com", "hotmail.com", "proton.me",
        "gmx.de", "web.de",
    ),
    "idp": ("corp-example.okta.com",),
    "ntp": ("0.pool.ntp.org", "1.pool.ntp.org", "time.windows.com"),
}  # fmt: skip

# /16 prefixes that large providers announce; site addresses are drawn inside them.
_PROVIDER_PREFIXES: Final = (
    (13, 107), (20, 190), (23, 32), (34, 120), (35, 186), (40, 126), (52, 84), (54, 230),
    (104, 16), (104, 244), (140, 82), (142, 250), (151, 101), (157, 240), (172, 217),
    (185, 199), (199, 232), (204, 79), (216, 58), (3, 120), (18, 154), (99, 86),
)  # fmt: skip
_IPV6_PREFIXES: Final = ("2606:4700", "2a00:1450", "2620:1ec", "2600:1f18", "2a03:2880")
# Residential ISP prefixes for people working from home.
_HOME_PREFIXES: Final = ((81, 2), (86, 150), (90, 200), (78, 40), (92, 184), (24, 5), (73, 12))
# Where the website's visitors and the mail servers that send us mail come from.
_CLIENT_PREFIXES: Final = (
    (31, 13), (37, 120), (46, 101), (62, 210), (66, 249), (68, 180), (71, 172), (77, 88),
    (82, 165), (87, 250), (94, 100), (109, 70), (121, 40), (133, 242), (178, 62), (188, 114),
)  # fmt: skip
_MAIL_PREFIXES: Final = ((209, 85), (40, 107), (52, 100), (74, 125), (98, 136), (17, 58))

_FIRST_NAMES: Final = (
    "anna", "ben", "carla", "david", "emma", "felix", "grace", "hugo", "ines", "jonas",
    "karin", "lukas", "maria", "nils", "olga", "paul", "rosa", "simon", "tara", "uwe",
    "vera", "walter", "yusuf", "zoe", "amir", "bea", "chen", "dana", "erik", "fatima",
)  # fmt: skip
_LAST_NAMES: Final = (
    "schmidt", "meyer", "novak", "garcia", "rossi", "jensen", "dubois", "kowalski", "silva",
    "berg", "weber", "fischer", "moreau", "ivanova", "hansen", "costa", "lindqvist", "wagner",
    "becker", "horvat", "okafor", "tanaka", "martin", "keller", "vogel", "larsen", "brandt",
)  # fmt: skip

# OCSF user type_id values.
USER_TYPE_USER: Final = 1
USER_TYPE_ADMIN: Final = 2
USER_TYPE_SYSTEM: Final = 3


@dataclass(frozen=True, slots=True)
class User:
    """A directory account. ``home_ip`` is the public address a remote worker uses."""

    name: str
    uid: str
    type_id: int
    home_ip: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.type_id == USER_TYPE_ADMIN


@dataclass(frozen=True, slots=True)
class Host:
    """A machine in the internal network; ``owner`` is set for workstations."""

    hostname: str
    ip: str
    role: str
    os: str
    owner: str | None = None

    @property
    def ephemeral_ports(self) -> tuple[int, int]:
        """The source-port range the host's OS picks from (Linux vs Windows/macOS)."""
        return (32768, 60999) if self.os == "linux" else (49152, 65535)


@dataclass(frozen=True, slots=True)
class Site:
    """An external destination: its DNS name, addresses and DNS answer shape."""

    hostname: str
    kind: str
    ips: tuple[str, ...]
    ipv6: tuple[str, ...]
    ttl: int
    cname: str | None = None


class Weighted(Generic[T]):
    """Items with fixed weights. ``pick`` draws like ``random.choices`` (same bisection of
    one ``random()``), without rebuilding the cumulative weights on every call."""

    __slots__ = ("_cum", "_hi", "_total", "items")

    def __init__(self, items: Sequence[T], weights: Sequence[float]) -> None:
        if len(items) != len(weights) or not items:
            raise ValueError("Weighted needs one weight per item and at least one item")
        self.items = tuple(items)
        self._cum = tuple(accumulate(weights))
        self._total = self._cum[-1]
        self._hi = len(self._cum) - 1

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect(self._cum, rng.random() * self._total, 0, self._hi)]


@dataclass(frozen=True, eq=False)
class Organisation:
    """Everything that stays the same between a baseline and a live traffic set."""

    domain: str
    domain_sid: str
    utc_offset_hours: int
    users: tuple[User, ...]
    service_accounts: tuple[User, ...]
    builtin_admin: User
    workstations: tuple[Host, ...]
    servers: Mapping[str, Host]
    site_groups: Mapping[str, Weighted[Site]]
    egress_ip: str
    web_clients: tuple[str, ...]
    mail_peers: tuple[str, ...]
    dns_forwarders: tuple[str, ...]
    _users_by_name: dict[str, User] = field(init=False, repr=False)
    _known_ips: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_name = {u.name: u for u in (*self.users, *self.service_accounts, self.builtin_admin)}
        object.__setattr__(self, "_users_by_name", by_name)
        known = {h.ip for h in self.hosts}
        for group in self.site_groups.values():
            for site in group.items:
                known.update(site.ips)
        known.update((self.egress_ip, *self.web_clients, *self.mail_peers, *self.dns_forwarders))
        known.update(u.home_ip for u in self.users if u.home_ip)
        object.__setattr__(self, "_known_ips", frozenset(known))

    @property
    def hosts(self) -> tuple[Host, ...]:
        return (*self.servers.values(), *self.workstations)

    @property
    def admins(self) -> tuple[User, ...]:
        return tuple(u for u in self.users if u.is_admin)

    @property
    def sites(self) -> tuple[Site, ...]:
        return tuple(s for g in self.site_groups.values() for s in g.items)

    @property
    def known_ips(self) -> frozenset[str]:
        """Every address the organisation talks to in normal operation."""
        return self._known_ips

    def user(self, name: str) -> User:
        return self._users_by_name[name]

    def workstations_of(self, user_name: str) -> tuple[Host, ...]:
        return tuple(h for h in self.workstations if h.owner == user_name)

    # --- time ----------------------------------------------------------------------------
    def local_hour_and_weekday(self, time_ms: int) -> tuple[int, int]:
        """Local hour of day (0-23) and weekday (Monday = 0) of an epoch-ms timestamp."""
        local_hours = (time_ms // HOUR_MS) + self.utc_offset_hours
        return local_hours % 24, (local_hours // 24 + _EPOCH_WEEKDAY) % 7

    def user_intensity(self, time_ms: int) -> float:
        """How busy people are at this moment, relative to the busiest working hour."""
        hour, weekday = self.local_hour_and_weekday(time_ms)
        if weekday >= 5:
            return _WEEKEND_DAY if 9 <= hour < 18 else _WEEKEND_NIGHT
        return _WEEKDAY_PROFILE[hour]

    def is_working_hours(self, time_ms: int) -> bool:
        """Weekday, 08:00-19:00 local time."""
        hour, weekday = self.local_hour_and_weekday(time_ms)
        return weekday < 5 and 8 <= hour < 19


@lru_cache(maxsize=8)
def build_organisation(org_seed: int = 1) -> Organisation:
    """The organisation for ``org_seed``: same seed, same hosts, users, names and addresses.

    >>> org = build_organisation()
    >>> org.servers["dns"].hostname
    'dns01.corp.example'
    """
    rng = random.Random(f"ocsf-detect-organisation:{org_seed}")
    taken: set[str] = set()
    domain_sid = "S-1-5-21-" + "-".join(str(rng.randint(10**8, 4 * 10**9)) for _ in range(3))

    servers = _servers()
    taken.update(h.ip for h in servers.values())
    users = _people(rng, domain_sid, taken)
    workstations = _workstations(rng, users, taken)
    service_accounts = tuple(
        User(name, f"{domain_sid}-{rid}", USER_TYPE_SYSTEM)
        for name, rid in (
            ("svc_backup", 1601),
            ("svc_sql", 1602),
            ("svc_web", 1603),
            ("svc_monitor", 1604),
        )
    )
    builtin_admin = User("administrator", f"{domain_sid}-500", USER_TYPE_ADMIN)
    site_groups = {
        kind: _site_group(rng, kind, names, taken) for kind, names in SITE_CATALOGUE.items()
    }
    return Organisation(
        domain=DOMAIN,
        domain_sid=domain_sid,
        utc_offset_hours=1,
        users=users,
        service_accounts=service_accounts,
        builtin_admin=builtin_admin,
        workstations=workstations,
        servers=servers,
        site_groups=site_groups,
        egress_ip=public_ip(rng, ((195, 34),), taken),
        web_clients=tuple(public_ip(rng, _CLIENT_PREFIXES, taken) for _ in range(300)),
        mail_peers=tuple(public_ip(rng, _MAIL_PREFIXES, taken) for _ in range(30)),
        dns_forwarders=("1.1.1.1", "8.8.8.8", "9.9.9.9"),
    )


def public_ip(rng: random.Random, prefixes: tuple[tuple[int, int], ...], taken: set[str]) -> str:
    """A fresh globally routable IPv4 address inside one of the /16 ``prefixes``."""
    while True:
        a, b = rng.choice(prefixes)
        text = f"{a}.{b}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if text not in taken and ipaddress.ip_address(text).is_global:
            taken.add(text)
            return text


def _servers() -> dict[str, Host]:
    # Role -> (name, address, OS). The layout is fixed: a server subnet and a DMZ.
    layout = {
        "dc": ("dc01", "10.10.1.10", "windows"),
        "dns": ("dns01", "10.10.1.53", "linux"),
        "file": ("fs01", "10.10.1.20", "windows"),
        "db": ("db01", "10.10.1.30", "linux"),
        "mail": ("mail01", "10.10.1.25", "linux"),
        "jump": ("jump01", "10.10.1.22", "linux"),
        "web": ("web01", "10.10.2.80", "linux"),
        "vpn": ("vpn01", "10.10.2.10", "linux"),
    }
    return {role: Host(f"{name}.{DOMAIN}", ip, role, os) for role, (name, ip, os) in layout.items()}


def _people(rng: random.Random, domain_sid: str, taken: set[str]) -> tuple[User, ...]:
    users: list[User] = []
    names: set[str] = set()
    while len(users) < 25:
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        name = f"{first[0]}{last}"
        if name in names:
            continue
        names.add(name)
        # The first three people hired run the infrastructure.
        type_id = USER_TYPE_ADMIN if len(users) < 3 else USER_TYPE_USER
        home_ip = public_ip(rng, _HOME_PREFIXES, taken) if rng.random() < 0.4 else None
        users.append(User(name, f"{domain_sid}-{1104 + len(users)}", type_id, home_ip))
    return tuple(users)


def _workstations(rng: random.Random, users: tuple[User, ...], taken: set[str]) -> tuple[Host, ...]:
    # Everyone has a desktop or laptop; admins and some others have a second machine.
    owners = [u.name for u in users]
    second = [u.name for u in users if u.is_admin]
    second += rng.sample([u.name for u in users if not u.is_admin], 15 - len(second))
    numbers = rng.sample(range(100, 1000), len(owners) + len(second))
    addresses = rng.sample(range(10 * 256 + 10, 11 * 256 + 250), len(numbers))
    hosts = []
    for owner, number, address in zip(owners + second, numbers, addresses, strict=True):
        os = rng.choices(("windows", "macos", "linux"), weights=(80, 15, 5))[0]
        prefix = "lt" if os == "macos" or rng.random() < 0.5 else "ws"
        ip = f"10.10.{address // 256}.{address % 256}"
        taken.add(ip)
        hosts.append(Host(f"{prefix}-{number:04d}.{DOMAIN}", ip, "workstation", os, owner))
    return tuple(hosts)


def _site_group(
    rng: random.Random, kind: str, names: tuple[str, ...], taken: set[str]
) -> Weighted[Site]:
    sites = []
    for name in names:
        prefix = rng.choice(_PROVIDER_PREFIXES)
        ips = tuple(public_ip(rng, (prefix,), taken) for _ in range(rng.choice((1, 1, 2, 4))))
        ipv6: tuple[str, ...] = ()
        if rng.random() < 0.5:
            base = rng.choice(_IPV6_PREFIXES)
            ipv6 = tuple(
                f"{base}:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}" for _ in ips
            )
        ttl = rng.choice((20, 60, 60, 300, 300, 300, 600, 3600))
        sites.append(Site(name, kind, ips, ipv6, ttl, _cname(rng, name, kind)))
    # Zipf-like popularity: the n-th site of a kind is visited about 1/n as often.
    return Weighted(sites, [1.0 / rank**1.1 for rank in range(1, len(sites) + 1)])


def _cname(rng: random.Random, name: str, kind: str) -> str | None:
    if kind not in ("web", "cdn", "saas", "update") or rng.random() > 0.35:
        return None
    style = rng.randrange(3)
    if style == 0:
        return f"{name}.edgekey.net"
    if style == 1:
        return f"d{rng.getrandbits(52):013x}.cloudfront.net"
    return f"{name.split('.')[-2]}.map.fastly.net"
