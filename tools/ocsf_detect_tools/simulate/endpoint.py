"""Web, endpoint, identity and cloud sources of the simulated organisation, with attacks.

HTTP Activity (4002) from the DMZ web server's load balancer, Process Activity (1007)
and File System Activity (1001) from the workstations' EDR, Account Change (3001) from
the identity provider, API Activity (6003) from the cloud account's audit trail (benign
only). Benign activity is drawn in working-hour-shaped time like the
network traffic (``traffic``); four attack types are mixed in, each labeled:

- ``office_encoded_powershell``: an Office application starts PowerShell with an
  encoded command (a macro's first stage);
- ``web_shell``: requests for a dropped script with commands in its query, from an
  address the site never served, with tool-like user agents;
- ``privilege_grant``: an account that never administers grants an admin policy;
- ``mass_file_rename``: a process from a temporary folder renames a user's files to
  an unknown extension in a burst (ransomware).

Every random choice comes from the ``random.Random`` handed in.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any, Final

from ocsf_detect_tools.simulate.organisation import Host, Organisation, User
from ocsf_detect_tools.simulate.records import (
    OCSF_VERSION,
    SEVERITIES,
    EventClass,
    EventFactory,
    Product,
)

HTTP_ACTIVITY: Final = EventClass(
    4002,
    "HTTP Activity",
    4,
    "Network Activity",
    {1: "Connect", 2: "Delete", 3: "Get", 4: "Head", 5: "Options", 6: "Post", 7: "Put"},
)
PROCESS_ACTIVITY: Final = EventClass(
    1007, "Process Activity", 1, "System Activity", {1: "Launch", 2: "Terminate"}
)
FILE_SYSTEM_ACTIVITY: Final = EventClass(
    1001,
    "File System Activity",
    1,
    "System Activity",
    {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 5: "Rename"},
)
API_ACTIVITY: Final = EventClass(
    6003, "API Activity", 6, "Application Activity",
    {1: "Create", 2: "Read", 3: "Update", 4: "Delete"},
)  # fmt: skip
ACCOUNT_CHANGE: Final = EventClass(
    3001,
    "Account Change",
    3,
    "Identity & Access Management",
    {
        1: "Create",
        2: "Enable",
        3: "Password Change",
        4: "Password Reset",
        5: "Disable",
        7: "Attach Policy",
        8: "Detach Policy",
    },
)

LOAD_BALANCER: Final = Product("HAProxy", "HAProxy Technologies", "access")
EDR: Final = Product("Sysmon", "Microsoft", "Microsoft-Windows-Sysmon/Operational")
IDP: Final = Product("Okta", "Okta", "system_log")
CLOUDTRAIL: Final = Product("CloudTrail", "AWS", "CloudTrail")

CLASSES: Final = (4002, 1007, 3001, 1001, 6003)
ATTACK_TYPES: Final = (
    "office_encoded_powershell",
    "web_shell",
    "privilege_grant",
    "mass_file_rename",
)
# Share of each class among these sources' benign events.
_SHARES: Final = ((4002, 0.32), (1007, 0.27), (3001, 0.08), (1001, 0.23), (6003, 0.10))
_METHOD_ACTIVITY: Final = {"GET": 3, "HEAD": 4, "OPTIONS": 5, "POST": 6, "PUT": 7}

_BROWSERS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
)
_TOOL_AGENTS: Final = (
    "python-requests/2.31.0",
    "curl/8.4.0",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
    "Go-http-client/1.1",
    "antSword/v2.1",
)
_PAGES: Final = (
    "/",
    "/index.html",
    "/about",
    "/contact",
    "/products",
    "/pricing",
    "/blog",
    "/login",
    "/static/css/site.css",
    "/static/js/app.js",
    "/static/img/logo.svg",
    "/favicon.ico",
    "/api/v1/items",
    "/api/v1/cart",
    "/api/v1/session",
    "/search",
)
# (parent image, child image, command line template, weight); {u}: user name
_LAUNCHES: Final = (
    (
        "explorer.exe",
        "chrome.exe",
        '"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe"',
        0.18,
    ),
    (
        "explorer.exe",
        "outlook.exe",
        '"C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE"',
        0.08,
    ),
    (
        "explorer.exe",
        "winword.exe",
        '"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE" /n '
        '"C:\\Users\\{u}\\Documents\\report.docx"',
        0.07,
    ),
    (
        "explorer.exe",
        "excel.exe",
        '"C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE" '
        '"C:\\Users\\{u}\\Documents\\budget.xlsx"',
        0.06,
    ),
    (
        "explorer.exe",
        "teams.exe",
        '"C:\\Users\\{u}\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe"',
        0.06,
    ),
    (
        "chrome.exe",
        "chrome.exe",
        '"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe" --type=renderer --lang=en-US',
        0.20,
    ),
    ("services.exe", "svchost.exe", "C:\\Windows\\system32\\svchost.exe -k netsvcs -p", 0.12),
    ("svchost.exe", "taskhostw.exe", "taskhostw.exe", 0.06),
    ("winword.exe", "splwow64.exe", "C:\\Windows\\splwow64.exe 12288", 0.03),
    (
        "outlook.exe",
        "chrome.exe",
        '"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe" --single-argument https://intranet.corp.example/',
        0.04,
    ),
    ("explorer.exe", "cmd.exe", '"C:\\Windows\\system32\\cmd.exe"', 0.02),
    (
        "explorer.exe",
        "powershell.exe",
        '"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"',
        0.02,
    ),
    ("svchost.exe", "wuauclt.exe", "wuauclt.exe /RunHandlerComServer", 0.06),
)
_IMAGE_DIRS: Final = {
    "chrome.exe": "C:\\Program Files\\Google\\Chrome\\Application",
    "outlook.exe": "C:\\Program Files\\Microsoft Office\\root\\Office16",
    "winword.exe": "C:\\Program Files\\Microsoft Office\\root\\Office16",
    "excel.exe": "C:\\Program Files\\Microsoft Office\\root\\Office16",
    "powershell.exe": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
}
# (process image, folder under the user's profile, extensions, weight)
_FILE_WORK: Final = (
    ("winword.exe", "Documents", ("docx",), 0.25),
    ("excel.exe", "Documents", ("xlsx", "csv"), 0.20),
    ("chrome.exe", "Downloads", ("pdf", "zip", "png"), 0.20),
    ("outlook.exe", "AppData\\Local\\Microsoft\\Outlook", ("ost",), 0.15),
    ("explorer.exe", "Desktop", ("lnk", "txt", "docx"), 0.10),
    ("teams.exe", "AppData\\Roaming\\Microsoft\\Teams", ("json", "log"), 0.10),
)
# (service, operation, activity_id, weight): the cloud account's everyday API calls
_API_CALLS: Final = (
    ("s3.amazonaws.com", "GetObject", 2, 0.30),
    ("s3.amazonaws.com", "PutObject", 1, 0.12),
    ("s3.amazonaws.com", "ListBucket", 2, 0.10),
    ("ec2.amazonaws.com", "DescribeInstances", 2, 0.15),
    ("logs.amazonaws.com", "PutLogEvents", 1, 0.15),
    ("sts.amazonaws.com", "AssumeRole", 2, 0.08),
    ("lambda.amazonaws.com", "Invoke", 2, 0.06),
    ("ec2.amazonaws.com", "StartInstances", 3, 0.02),
    ("dynamodb.amazonaws.com", "Query", 2, 0.02),
)
_API_AGENTS: Final = ("aws-cli/2.15.30 Python/3.11.8", "Boto3/1.34.50 Python/3.12.2", "console")
_ADMIN_POLICIES: Final = ("Domain Admins", "AdministratorAccess", "Global Administrator")
_USER_POLICIES: Final = ("VPN Users", "Sales Share", "Engineering Share", "Wiki Editors")


def endpoint_events(
    org: Organisation,
    rng: random.Random,
    factory: EventFactory,
    *,
    start_ms: int,
    end_ms: int,
    n_benign: int,
    n_attack: int,
) -> list[tuple[dict[str, Any], str]]:
    """``n_benign`` benign events and ``n_attack`` attack events of these sources, each
    with its label ("benign" or the attack type), in generation order."""
    sim = _Sources(org, rng, factory, start_ms, end_ms)
    out: list[tuple[dict[str, Any], str]] = [(e, "benign") for e in sim.benign(n_benign)]
    per_type = [n_attack // len(ATTACK_TYPES)] * len(ATTACK_TYPES)
    for i in range(n_attack - sum(per_type)):
        per_type[i] += 1
    injectors: dict[str, Callable[[int], list[dict[str, Any]]]] = {
        "office_encoded_powershell": sim.office_powershell,
        "web_shell": sim.web_shell,
        "privilege_grant": sim.privilege_grant,
        "mass_file_rename": sim.mass_rename,
    }
    for kind, count in zip(ATTACK_TYPES, per_type, strict=True):
        if count:
            out += [(e, kind) for e in injectors[kind](count)]
    return out


class _Sources:
    def __init__(
        self,
        org: Organisation,
        rng: random.Random,
        factory: EventFactory,
        start_ms: int,
        end_ms: int,
    ) -> None:
        self.org, self.rng, self.factory = org, rng, factory
        self.start, self.end = start_ms, end_ms
        self.windows = tuple(h for h in org.workstations if h.os == "windows" and h.owner)
        self.web = org.servers["web"]
        self.site = "www." + org.domain.split(".", 1)[-1]
        self.clients = org.web_clients
        self.admins = org.admins
        self.people = tuple(u for u in org.users if not u.is_admin)

    # -- time -----------------------------------------------------------------------------
    def _work_time(self) -> int:
        """A moment weighted by the organisation's working hours (people's activity)."""
        rng, org = self.rng, self.org
        for _ in range(50):
            t = rng.randrange(self.start, self.end)
            if rng.random() * 1.2 < org.user_intensity(t) + 0.05:
                return t
        return t

    def _off_hours(self) -> int:
        for _ in range(200):
            t = self.rng.randrange(self.start, self.end)
            if not self.org.is_working_hours(t):
                return t
        return self.rng.randrange(self.start, self.end)

    # -- records --------------------------------------------------------------------------
    def _base(
        self, cls: EventClass, activity_id: int, t: int, product: Product, severity_id: int = 1
    ) -> dict[str, Any]:
        name = cls.activities[activity_id]
        return {
            "class_uid": cls.uid,
            "class_name": cls.name,
            "category_uid": cls.category_uid,
            "category_name": cls.category_name,
            "activity_id": activity_id,
            "activity_name": name,
            "type_uid": cls.uid * 100 + activity_id,
            "type_name": f"{cls.name}: {name}",
            "severity_id": severity_id,
            "severity": SEVERITIES[severity_id],
            "time": t,
            "metadata": {
                "version": OCSF_VERSION,
                "uid": self.factory.uid(),
                "product": {"name": product.name, "vendor_name": product.vendor_name},
                "log_name": product.log_name,
            },
        }

    def http(
        self, t: int, client: str, method: str, path: str, query: str | None, agent: str, code: int
    ) -> dict[str, Any]:
        rng = self.rng
        event = self._base(HTTP_ACTIVITY, _METHOD_ACTIVITY[method], t, LOAD_BALANCER)
        url: dict[str, Any] = {"hostname": self.site, "path": path, "scheme": "https", "port": 443}
        if query:
            url["query_string"] = query
        url["url_string"] = f"https://{self.site}{path}" + (f"?{query}" if query else "")
        out_bytes = int(rng.lognormvariate(8.5 if "." in path else 9.5, 0.8))
        event.update(
            {
                "http_request": {
                    "http_method": method,
                    "url": url,
                    "user_agent": agent,
                    "version": "HTTP/1.1",
                },
                "http_response": {
                    "code": code,
                    "content_type": "text/html" if "." not in path else "application/octet-stream",
                    "length": out_bytes,
                },
                "src_endpoint": {"ip": client, "port": rng.randint(49152, 65535)},
                "dst_endpoint": {"ip": self.web.ip, "port": 443, "hostname": self.web.hostname},
                "traffic": {"bytes_in": int(rng.lognormvariate(6.5, 0.4)), "bytes_out": out_bytes},
                "status_id": 1 if code < 400 else 2,
                "action_id": 1,
            }
        )
        return event

    def process(
        self, t: int, host: Host, user: str, parent: str, child: str, cmd: str
    ) -> dict[str, Any]:
        rng = self.rng
        event = self._base(PROCESS_ACTIVITY, 1, t, EDR)
        child_dir = _IMAGE_DIRS.get(child, "C:\\Windows\\System32")
        parent_dir = _IMAGE_DIRS.get(parent, "C:\\Windows")
        event.update(
            {
                "device": {"hostname": host.hostname, "ip": host.ip, "type_id": 2},
                "actor": {
                    "user": {"name": user, "domain": "CORP"},
                    "process": {
                        "pid": rng.randint(400, 30000),
                        "file": {"name": parent, "path": f"{parent_dir}\\{parent}", "type_id": 1},
                    },
                },
                "process": {
                    "pid": rng.randint(400, 30000),
                    "cmd_line": cmd,
                    "integrity_id": 3 if user != "SYSTEM" else 5,
                    "file": {"name": child, "path": f"{child_dir}\\{child}", "type_id": 1},
                },
                "status_id": 1,
            }
        )
        return event

    def file(
        self, t: int, host: Host, user: str, image: str, activity: int, folder: str, name: str
    ) -> dict[str, Any]:
        event = self._base(FILE_SYSTEM_ACTIVITY, activity, t, EDR)
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        file: dict[str, Any] = {
            "name": name,
            "parent_folder": folder,
            "path": f"{folder}\\{name}",
            "type_id": 1,
            "size": int(self.rng.lognormvariate(10.5, 1.2)),
        }
        if ext:
            file["ext"] = ext
        event.update(
            {
                "device": {"hostname": host.hostname, "ip": host.ip, "type_id": 2},
                "actor": {
                    "user": {"name": user, "domain": "CORP"},
                    "process": {
                        "pid": self.rng.randint(400, 30000),
                        "file": {"name": image, "path": _image_path(image)},
                    },
                },
                "file": file,
            }
        )
        return event

    def account(
        self, t: int, actor: User, target: User, activity: int, policy: str | None
    ) -> dict[str, Any]:
        event = self._base(ACCOUNT_CHANGE, activity, t, IDP)
        event.update(
            {
                "actor": {"user": {"name": actor.name, "uid": actor.uid, "type": "User"}},
                "user": {"name": target.name, "uid": target.uid, "type_id": target.type_id},
                "src_endpoint": {"ip": self._workstation_of(actor).ip},
                "http_request": {"user_agent": _BROWSERS[0]},
                "status_id": 1,
            }
        )
        if policy is not None:
            event["policy"] = {"name": policy}
        return event

    def _workstation_of(self, user: User) -> Host:
        own = self.org.workstations_of(user.name)
        return own[0] if own else self.rng.choice(self.org.workstations)

    def _owner_and_host(self) -> tuple[str, Host]:
        host = self.rng.choice(self.windows)
        return str(host.owner), host

    # -- benign ---------------------------------------------------------------------------
    def benign(self, n: int) -> list[dict[str, Any]]:
        rng = self.rng
        classes = [c for c, _ in _SHARES]
        weights = [w for _, w in _SHARES]
        makers = {
            4002: self._benign_http,
            1007: self._benign_process,
            3001: self._benign_account,
            1001: self._benign_file,
            6003: self._benign_api,
        }
        return [makers[c]() for c in rng.choices(classes, weights=weights, k=n)]

    def _benign_http(self) -> dict[str, Any]:
        rng = self.rng
        path = rng.choice(_PAGES)
        if path == "/products" and rng.random() < 0.7:
            path = f"/products/{rng.randint(1, 60)}"
        method = "POST" if path in ("/login", "/api/v1/cart") and rng.random() < 0.6 else "GET"
        query = f"q={rng.choice(['shoes', 'bags', 'sale', 'new'])}" if path == "/search" else None
        code = rng.choices((200, 304, 404, 302), weights=(0.82, 0.1, 0.03, 0.05))[0]
        return self.http(
            self._work_time(),
            rng.choice(self.clients),
            method,
            path,
            query,
            rng.choice(_BROWSERS),
            code,
        )

    def _benign_process(self) -> dict[str, Any]:
        rng = self.rng
        user, host = self._owner_and_host()
        parent, child, cmd, _ = rng.choices(_LAUNCHES, weights=[w[3] for w in _LAUNCHES])[0]
        if parent in ("services.exe", "svchost.exe"):
            user = "SYSTEM"
        return self.process(self._work_time(), host, user, parent, child, cmd.format(u=user))

    def _benign_file(self) -> dict[str, Any]:
        rng = self.rng
        user, host = self._owner_and_host()
        image, sub, exts, _ = rng.choices(_FILE_WORK, weights=[w[3] for w in _FILE_WORK])[0]
        activity = rng.choices((1, 2, 3, 4, 5), weights=(0.2, 0.45, 0.25, 0.06, 0.04))[0]
        name = f"{rng.choice(['notes', 'report', 'draft', 'q3', 'plan', 'invoice'])}" + (
            f"_{rng.randint(1, 40)}.{rng.choice(exts)}"
        )
        folder = f"C:\\Users\\{user}\\{sub}"
        return self.file(self._work_time(), host, user, image, activity, folder, name)

    def _benign_account(self) -> dict[str, Any]:
        rng = self.rng
        t = self._work_time()
        if rng.random() < 0.45:  # people change their own password
            user = rng.choice(self.people)
            return self.account(t, user, user, 3, None)
        admin = rng.choice(self.admins)
        target = rng.choice(self.people)
        activity = rng.choices((1, 2, 4, 5, 7, 8), weights=(0.1, 0.1, 0.4, 0.1, 0.2, 0.1))[0]
        policy = rng.choice(_USER_POLICIES) if activity in (7, 8) else None
        return self.account(t, admin, target, activity, policy)

    def _benign_api(self) -> dict[str, Any]:
        rng = self.rng
        service, operation, activity, _ = rng.choices(
            _API_CALLS, weights=[c[3] for c in _API_CALLS]
        )[0]
        automated = rng.random() < 0.6  # pipelines and services, around the clock
        if automated:
            actor = rng.choice(self.org.service_accounts)
            t, src, agent = rng.randrange(self.start, self.end), self.web.ip, _API_AGENTS[1]
        else:
            actor = rng.choice(self.admins + self.people[:10])
            t, src = self._work_time(), self.org.egress_ip
            agent = rng.choice((_API_AGENTS[0], _API_AGENTS[2]))
        event = self._base(API_ACTIVITY, activity, t, CLOUDTRAIL)
        event.update(
            {
                "actor": {"user": {"name": actor.name, "type": "IAMUser", "uid": actor.uid}},
                "api": {"operation": operation, "service": {"name": service}},
                "src_endpoint": {"ip": src},
                "http_request": {"user_agent": agent},
                "cloud": {"provider": "AWS", "region": "eu-west-1"},
                "resources": [{"type": service.split(".")[0], "uid": f"res-{rng.randrange(40)}"}],
                "status_id": 1 if rng.random() < 0.98 else 2,
            }
        )
        return event

    # -- attacks --------------------------------------------------------------------------
    def office_powershell(self, n: int) -> list[dict[str, Any]]:
        rng = self.rng
        out = []
        for _ in range(n):
            user, host = self._owner_and_host()
            office = rng.choice(("winword.exe", "excel.exe", "outlook.exe"))
            payload = "".join(
                rng.choice(string.ascii_letters + string.digits + "+/")
                for _ in range(rng.randint(180, 600))
            )
            cmd = f"powershell.exe -NoP -NonI -W Hidden -Exec Bypass -enc {payload}="
            out.append(self.process(self._work_time(), host, user, office, "powershell.exe", cmd))
        return out

    def web_shell(self, n: int) -> list[dict[str, Any]]:
        rng = self.rng
        attacker = f"185.{rng.randint(100, 250)}.{rng.randint(0, 255)}.{rng.randint(2, 250)}"
        shell = "/uploads/" + "".join(rng.choice(string.ascii_lowercase) for _ in range(6))
        shell += rng.choice((".php", ".aspx", ".jsp"))
        t = self._off_hours()
        out = []
        for i in range(n):
            command = rng.choice(("whoami", "id", "net user", "ipconfig /all", "dir C:\\"))
            query = "cmd=" + command.replace(" ", "+") + f"&x={rng.getrandbits(32):08x}"
            method = "POST" if i % 3 else "GET"
            out.append(
                self.http(
                    t + i * rng.randint(5_000, 60_000),
                    attacker,
                    method,
                    shell,
                    query,
                    rng.choice(_TOOL_AGENTS),
                    200,
                )
            )
        return out

    def privilege_grant(self, n: int) -> list[dict[str, Any]]:
        rng = self.rng
        out = []
        for _ in range(n):
            actor = rng.choice(self.people)  # never administers accounts
            target = rng.choice(self.people)
            t = self._off_hours()
            out.append(self.account(t, actor, target, 7, rng.choice(_ADMIN_POLICIES)))
        return out

    def mass_rename(self, n: int) -> list[dict[str, Any]]:
        rng = self.rng
        user, host = self._owner_and_host()
        image = rng.choice(("svchost32.exe", "updater.exe", "winlogon64.exe"))
        ext = "".join(rng.choice(string.ascii_lowercase) for _ in range(5))
        t = self._off_hours()
        out = []
        for i in range(n):
            sub = rng.choice(("Documents", "Desktop", "Downloads"))
            name = f"{rng.choice(['notes', 'report', 'plan', 'invoice'])}_{i}.docx.{ext}"
            event = self.file(t + i * 200, host, user, image, 5, f"C:\\Users\\{user}\\{sub}", name)
            event["actor"]["process"]["file"]["path"] = (
                f"C:\\Users\\{user}\\AppData\\Local\\Temp\\{image}"
            )
            out.append(event)
        return out


def _image_path(image: str) -> str:
    folder = _IMAGE_DIRS.get(image, "C:\\Windows")
    return f"{folder}\\{image}"
