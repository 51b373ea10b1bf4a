"""The one entry point, ``cxrl``: parses arguments and calls the library. Thin by design.

Each subcommand lives beside the code it drives and exposes ``add_cli(subparsers)``, which adds
its parser and sets ``func``; only the chosen subcommand's module is imported (torch is slow). A subcommand with
an ``overrides`` positional (``key=value ...``) receives overrides written after its options too.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys

from cxrl import __version__
from cxrl.errors import CxrlError

COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("cxrl.data.phantom.cli", "write a phantom dataset in the CheXpert or MIMIC-CXR-JPG layout"),
    "prepare": ("cxrl.data.prepare", "read a dataset and build the preprocessed image cache"),
    "inspect": ("cxrl.data.inspect", "counts, co-occurrence and label shift of a cache"),
    "pretrain": ("cxrl.train", "pre-train encoders with a registered method (simclr, moco, byol, swav, supervised; "
                 "from reports: convirt, medclip, gloria, mgca, cm_cgns, label_text)"),
    "evaluate": ("cxrl.evaluate.cli", "evaluate an encoder across label fractions (linear, finetune, ...)"),
    "compare": ("cxrl.evaluate.compare", "one table of several encoders' evaluations"),
    "explain": ("cxrl.explain.cli", "Grad-CAM, pointing game, embedding maps and similarity heatmaps (HTML gallery)"),
    "label-reports": ("cxrl.data.text.label_cli", "the 14 CheXpert labels of free-text reports (rule labeler)"),
    "demo": ("cxrl.demo", "phantom -> cache -> SimCLR -> evaluation, end to end"),
}


def _parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrl", description="Chest X-ray representation learning.")
    parser.add_argument("--version", action="version", version=f"cxrl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if name == command:
            importlib.import_module(module).add_cli(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; ``key=value`` extras after the options join ``args.overrides`` where there is one."""
    parser = _parser(next((a for a in argv if a in COMMANDS), None))
    args, extras = parser.parse_known_args(argv)
    takes_overrides = hasattr(args, "overrides")
    if takes_overrides:  # only the extras that are not key=value are unrecognized
        args.overrides = [*args.overrides, *(e for e in extras if _is_override(e))]
        extras = [e for e in extras if not _is_override(e)]
    if extras:
        hint = " (a config override is key=value)" if takes_overrides else ""
        parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    return args


def _is_override(arg: str) -> bool:
    return "=" in arg and not arg.startswith("-")


def main(argv: list[str] | None = None) -> int:
    """Run ``cxrl``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        _parser(None).print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe fails here, inside the try, not at interpreter exit
        return status
    except CxrlError as e:
        print(f"cxrl {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cxrl {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`cxrl inspect CACHE | head -1`): Python docs' signal recipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit must not fail again
        return 1
    except OSError as e:
        if e.filename is None:
            raise
        print(f"cxrl {args.command}: error: cannot {_access(e)} {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 1


def _access(e: OSError) -> str:
    """``write`` where the errno is about writing (read-only filesystem, no permission or space), else ``access``."""
    return "write" if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT) else "access"


if __name__ == "__main__":
    sys.exit(main())
