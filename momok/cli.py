"""momok: regenerate the MoMoK paper (multi-modal KG completion) from raw data.

The one entry point, ``momok <command>``.

Each command lives in the module that does its job; that module exposes
``configure_parser(parser)`` (adds its arguments) and ``run(args) -> int``.
Modules are imported lazily so that ``momok --help`` and light commands stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "fetch": ("momok.data.fetch", "download a benchmark (or copy it from a mirror) and verify its checksums"),
    "fetch-modalities": ("momok.data.modalities",
                         "collect the entities' images and descriptions from their public primary sources"),
    "toy": ("momok.data.toy", "write the small synthetic multi-modal KG used by tests and the CI smoke run"),
    "stats": ("momok.data.stats", "print the paper's Table 1 for a dataset folder"),
    "features": ("momok.features.cli", "extract, import or perturb modality feature files"),
    "train": ("momok.commands.train", "train a model from a config and evaluate its best-validation checkpoint"),
    "evaluate": ("momok.commands.evaluate", "re-evaluate a saved run"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momok", description=__doc__.splitlines()[0].split(': ', 1)[1])
    from momok import __version__

    parser.add_argument("--version", action="version", version=f"momok {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen command's module is imported (its arguments are needed to parse).
        if wanted == name:
            module = importlib.import_module(module_name)
            module.configure_parser(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from momok.errors import MomokError
    from momok.utils import reuse_freed_memory

    reuse_freed_memory()

    try:
        return int(args._run(args) or 0)
    except MomokError as err:
        print(f"momok {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
