"""ocsf-detect serve --bundle DIR [--host 127.0.0.1] [--port 8080]"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ocsf_detect import names
from ocsf_detect_tools.cli import CommandError


def port_number(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535)")
    return port


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the prediction API locally (API Gateway proxy events, real handler)",
        description="Serve the prediction API's /v1 routes over HTTP on this machine: each "
        "request becomes an API Gateway proxy event for the real handler, with the bundle "
        "loaded once. Ctrl-C stops it.",
    )
    p.add_argument("--bundle", required=True, type=Path, help="unpacked bundle directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", default=8080, type=port_number, help="0 picks a free port")
    p.add_argument("--cors-origin", help=f"set {names.ENV_CORS_ALLOW_ORIGIN} for this server")
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.set_defaults(func=run)


def load_handler(bundle: Path, cors_origin: str | None = None) -> Any:
    """Configure the environment the function reads, then import its handler (the
    settings are read at import, as at a cold start) and load the bundle once."""
    if not (bundle / "manifest.json").is_file():
        raise CommandError(f"{bundle} is not a bundle directory (no manifest.json)")
    os.environ[names.ENV_BUNDLE_PATH] = str(bundle.resolve())
    os.environ.pop(names.ENV_BUNDLE_S3_URI, None)
    if cors_origin:
        os.environ[names.ENV_CORS_ALLOW_ORIGIN] = cors_origin
    # Locally there is no CloudWatch agent or X-Ray daemon to send to.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    try:
        from prediction_api import handler, service
    except ImportError as exc:
        raise CommandError(
            f"cannot import the prediction function ({exc}); "
            "run from a checkout installed with pip install -e ."
        ) from exc
    except ValueError as exc:  # pydantic's ValidationError: a malformed setting
        raise CommandError(str(exc)) from exc
    try:
        service.get_detector(handler.settings)
    except service.BundleUnavailableError as exc:
        raise CommandError(exc.message) from exc
    return handler.lambda_handler


def run(args: argparse.Namespace) -> int:
    from ocsf_detect_tools.localapi import make_server

    lambda_handler = load_handler(args.bundle, args.cors_origin)
    try:
        server = make_server(lambda_handler, args.host, args.port)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    server.quiet = args.quiet  # type: ignore[attr-defined]
    print(
        f"prediction API on http://{args.host}:{server.server_port}/v1/health (Ctrl-C stops)",
        file=sys.stderr,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
