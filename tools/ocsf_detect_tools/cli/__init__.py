"""The ``ocsf-detect`` command line.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module
is imported only when its command runs, so ``ocsf-detect --help`` stays fast and
commands that need optional extras (torch, moto) fail with an install hint instead of an
ImportError at start-up.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ocsf_detect_tools.eventio import EventFileError

if TYPE_CHECKING:
    from pydantic import ValidationError

# command name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ocsf_detect_tools.cli.train", "train a bundle from baseline OCSF events"),
    "score": ("ocsf_detect_tools.cli.score", "score events with a bundle, JSONL of outcomes"),
    "evaluate": ("ocsf_detect_tools.cli.evaluate", "measure detection quality against labels"),
    "inspect": ("ocsf_detect_tools.cli.inspect_bundle", "show what a bundle holds"),
    "bench": ("ocsf_detect_tools.cli.bench", "measure parsing, feature and scoring throughput"),
    "generate": ("ocsf_detect_tools.cli.generate", "generate labeled synthetic OCSF traffic"),
    "replay": (
        "ocsf_detect_tools.cli.replay",
        "replay events through Kinesis and the stream function",
    ),
    "serve": ("ocsf_detect_tools.cli.serve", "run the prediction API locally"),
    "publish": ("ocsf_detect_tools.cli.publish", "publish a bundle to the model registry bucket"),
    "bundles": ("ocsf_detect_tools.cli.bundles", "list bundles published in the registry"),
    "demo": ("ocsf_detect_tools.cli.demo", "run the whole pipeline locally"),
}


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocsf-detect", description="Streaming anomaly detection for OCSF security events."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if name == wanted:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("ocsf_detect"):
                    raise
                raise CommandError(
                    f"'{name}' needs the optional package '{exc.name}'; "
                    "install the project with its extras: pip install -e '.[train,emulator]'"
                ) from exc
            module.register(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(args_list)
        args = parser.parse_args(args_list)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not args_list else 2
        return int(args.func(args) or 0)
    except (CommandError, EventFileError) as exc:
        return _user_error(str(exc))
    except ValueError as exc:
        from pydantic import ValidationError  # not at import time: keeps --help fast

        if isinstance(exc, ValidationError):  # a value out of range, from a flag or a file
            return _user_error(one_line(exc))
        raise
    except (
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        FileExistsError,
        PermissionError,
    ) as exc:  # a path the user gave
        return _user_error(f"{exc.strerror or exc}: {exc.filename}")
    except KeyboardInterrupt:
        print("ocsf-detect: interrupted", file=sys.stderr)
        return 130


def _user_error(message: str) -> int:
    print(f"ocsf-detect: error: {message}", file=sys.stderr)
    return 2


def one_line(exc: ValidationError) -> str:
    """A pydantic validation error as one line: ``field: message; field: message``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
