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
from typing import TYPE_CHECKING, NoReturn

from ocsf_detect_tools.eventio import EventFileError

if TYPE_CHECKING:
    from pydantic import ValidationError

# command name -> (module, one-line help). Order is the order shown by --help. Each
# module's parser repeats the help as its description, at more length.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ocsf_detect_tools.cli.train", "train a bundle from baseline OCSF events"),
    "score": ("ocsf_detect_tools.cli.score", "score events with a bundle, JSONL of outcomes"),
    "evaluate": ("ocsf_detect_tools.cli.evaluate", "measure detection quality against labels"),
    "report": ("ocsf_detect_tools.cli.report", "score events and write an HTML report"),
    "inspect": ("ocsf_detect_tools.cli.inspect_bundle", "show what a bundle holds"),
    "bench": ("ocsf_detect_tools.cli.bench", "measure parsing, feature and scoring throughput"),
    "generate": ("ocsf_detect_tools.cli.generate", "generate labeled synthetic OCSF traffic"),
    "replay": (
        "ocsf_detect_tools.cli.replay",
        "replay events through Kinesis and the stream function",
    ),
    "redrive": (
        "ocsf_detect_tools.cli.redrive",
        "redrive the batches the on-failure queue points to through the stream function",
    ),
    "serve": ("ocsf_detect_tools.cli.serve", "run the prediction API locally"),
    "publish": ("ocsf_detect_tools.cli.publish", "publish a bundle to the model registry bucket"),
    "bundles": ("ocsf_detect_tools.cli.bundles", "list bundles published in the registry"),
    "demo": ("ocsf_detect_tools.cli.demo", "run the whole pipeline locally"),
}

EXIT_OK = 0
EXIT_INTERNAL = 1  # a failure of the tool itself, not of its input
EXIT_USAGE = 2  # a user mistake, explained in one line
EXIT_REJECTED = 3  # finished, but all or more than --max-rejected of the input was rejected

EPILOG = (
    "exit status: 0 done; 2 a user mistake (one line on stderr); 3 finished, but every "
    "input line, or more than --max-rejected of them, was rejected; 1 an internal error"
)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("ocsf-detect")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown (not installed)"


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ocsf-detect",
        description="Streaming anomaly detection for OCSF security events.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"ocsf-detect {version()}")
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
            sub.add_parser(name, help=help_text, description=help_text)
    for name, command in sub.choices.items():
        command.epilog = command.epilog or EPILOG
        if not command.description:  # never a bare usage line
            command.description = COMMANDS[name][1]
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
        return _internal_error(exc)
    except (
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        FileExistsError,
        PermissionError,
    ) as exc:  # a path the user gave
        return _user_error(f"{exc.strerror or exc}: {exc.filename}")
    except KeyboardInterrupt:
        print("ocsf-detect: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ocsf-detect score ... | head`: the reader has enough
        import os

        # Python flushes stdout at exit: point it at /dev/null so that is not a second error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        return _internal_error(exc)


def _internal_error(exc: BaseException) -> int:
    """A failure of the tool, not of its input: one line, and the traceback only when
    ``OCSF_DETECT_DEBUG`` is set (a user is not shown a stack trace)."""
    import os
    import traceback

    if os.environ.get("OCSF_DETECT_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(
        f"ocsf-detect: internal error: {type(exc).__name__}: {first} "
        "(set OCSF_DETECT_DEBUG=1 for the traceback, and please report it)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def add_max_rejected(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-rejected",
        type=share,
        default=0.5,
        metavar="SHARE",
        help="exit with status 3 when more than this share (0-1) of the input lines is "
        "rejected (default: %(default)s); every line rejected is always status 3",
    )


def share(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1 (or 0%-100%)")
    return value


def too_many_rejected(rejected: int, total: int, max_share: float) -> bool:
    """Every line, or more than ``max_share`` of them, was rejected (none read: no)."""
    return total > 0 and (rejected >= total or rejected > max_share * total)


def rejected_status(rejected: int, total: int, max_share: float, source: str) -> int:
    """0, or 3 with one line on stderr when every line of ``source``, or more than
    ``max_share`` of them, was rejected."""
    if not too_many_rejected(rejected, total, max_share):
        return EXIT_OK
    share_text = "every line" if rejected == total else f"{rejected / total:.0%} of the lines"
    print(
        f"ocsf-detect: {rejected:,} of {total:,} lines of {source} were rejected "
        f"({share_text}; --max-rejected {max_share:g}): is it OCSF events, one JSON object "
        "per line? See the rejected outcomes' reason and field",
        file=sys.stderr,
    )
    return EXIT_REJECTED


def _user_error(message: str) -> int:
    print(f"ocsf-detect: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def one_line(exc: ValidationError) -> str:
    """A pydantic validation error as one line: ``field: message; field: message``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
