"""Build a handler module into an Ackbar component with componentize-py.

    python -m ackbar_guest.build APP -o target/app.wasm [-p src] [--componentize-py PATH]

APP is the module that assigns `WitWorld = export(...)`. The SDK's WIT (`wit_path()`) and the
SDK itself are passed to componentize-py; `-p` adds directories holding the app and its
dependencies (default: the current directory). Run it with the Python of the project's virtualenv:
componentize-py then also sees that virtualenv's packages.

componentize-py is found as `--componentize-py`, else `$COMPONENTIZE_PY`, else next to this Python
(a virtualenv's bin/), else on PATH; `pip install 'ackbar-guest[build]'` installs the version the
SDK is tested with.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from . import wit_path

WORLD = "handler"
"""The world in the WIT that a handler component targets."""


def find_componentize_py(explicit: str | None = None) -> str:
    """The componentize-py executable to run; raises FileNotFoundError when there is none."""
    for candidate in (explicit, os.environ.get("COMPONENTIZE_PY")):
        if candidate:
            return candidate
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.is_file():
        return str(beside)
    found = shutil.which("componentize-py")
    if found:
        return found
    raise FileNotFoundError(
        "componentize-py not found: install it (pip install 'ackbar-guest[build]'), or give its "
        "path with --componentize-py or $COMPONENTIZE_PY"
    )


def command(
    app: str,
    output: Path,
    python_path: Sequence[str | Path] = (".",),
    componentize_py: str = "componentize-py",
    quiet: bool = False,
) -> list[str]:
    """The componentize-py command line that builds `app` into `output`."""
    sdk_root = Path(__file__).resolve().parent.parent
    paths = [str(p) for p in python_path]
    if all(Path(p).resolve() != sdk_root for p in paths):
        paths.append(str(sdk_root))
    cmd = [componentize_py, "-d", str(wit_path()), "-w", WORLD]
    if quiet:
        cmd.append("--quiet")
    cmd += ["componentize", app]
    for path in paths:
        cmd += ["-p", path]
    return cmd + ["-o", str(output)]


def build(
    app: str,
    output: str | Path,
    python_path: Sequence[str | Path] = (".",),
    componentize_py: str | None = None,
    quiet: bool = False,
) -> Path:
    """Build `app` into the component `output`; raises CalledProcessError when componentize-py
    fails. The file is replaced atomically, so a host watching it never loads half of it."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        # componentize-py adds $VIRTUAL_ENV's site-packages: make it this Python's virtualenv.
        env["VIRTUAL_ENV"] = sys.prefix
    cmd = command(app, partial, python_path, find_componentize_py(componentize_py), quiet)
    try:
        subprocess.run(cmd, env=env, check=True)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ackbar_guest.build",
        description="Build a Python handler module into an Ackbar component (componentize-py).",
    )
    parser.add_argument("app", help="the module that assigns WitWorld = export(...)")
    parser.add_argument("-o", "--output", required=True, help="the component to write (.wasm)")
    parser.add_argument(
        "-p", "--python-path", action="append", default=None, metavar="DIR",
        help="a directory with the app or its dependencies; repeatable (default: .)",
    )
    parser.add_argument("--componentize-py", metavar="PATH", help="the componentize-py to run")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    args = parser.parse_args(argv)
    try:
        output = build(
            args.app, args.output, args.python_path or ["."], args.componentize_py, args.quiet
        )
    except FileNotFoundError as err:
        print(f"ackbar_guest.build: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(f"ackbar_guest.build: componentize-py failed (exit {err.returncode})", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"ackbar_guest.build: {output} ({output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
