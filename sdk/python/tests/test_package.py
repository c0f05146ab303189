"""The packaged WIT and the build helper's command line (componentize-py itself is not run)."""

import contextlib
import io
import os
import stat
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import ackbar_guest
from ackbar_guest import build

REPO_WIT = Path(__file__).resolve().parents[3] / "wit" / "ackbar.wit"


class WitTest(unittest.TestCase):
    def test_the_wit_ships_with_the_package(self):
        path = ackbar_guest.wit_path()
        self.assertTrue(path.is_file())
        self.assertIn("world handler", path.read_text())

    @unittest.skipUnless(REPO_WIT.is_file(), "not in the Ackbar repository")
    def test_the_wit_is_the_repository_one(self):
        self.assertEqual(ackbar_guest.wit_path().read_bytes(), REPO_WIT.read_bytes(),
                         "run scripts/sync-wit.sh")

    def test_version(self):
        self.assertEqual(ackbar_guest.__version__, "0.1.0")


class BuildTest(unittest.TestCase):
    def test_command(self):
        sdk_root = str(Path(ackbar_guest.__file__).resolve().parent.parent)
        cmd = build.command("app", Path("out.wasm"), ["app_src"], "cpy")
        self.assertEqual(cmd, [
            "cpy", "-d", str(ackbar_guest.wit_path()), "-w", "handler", "componentize", "app",
            "-p", "app_src", "-p", sdk_root, "-o", "out.wasm",
        ])
        self.assertEqual(build.command("app", Path("o"), [sdk_root], "cpy", quiet=True).count(
            sdk_root), 1)
        self.assertIn("--quiet", build.command("app", Path("o"), quiet=True))

    def test_finding_componentize_py(self):
        with mock.patch.dict(os.environ, {"COMPONENTIZE_PY": "/from/env"}):
            self.assertEqual(build.find_componentize_py("/given"), "/given")
            self.assertEqual(build.find_componentize_py(), "/from/env")
        with mock.patch.dict(os.environ, {"COMPONENTIZE_PY": "", "PATH": ""}), \
                mock.patch.object(sys, "executable", "/nowhere/python"):
            with self.assertRaisesRegex(FileNotFoundError, "COMPONENTIZE_PY"):
                build.find_componentize_py()

    def test_build_replaces_the_output_at_once(self):
        with tempfile.TemporaryDirectory() as tmp:
            # A stand-in that writes its arguments to the -o file, or fails on app "broken".
            fake = Path(tmp, "componentize-py")
            fake.write_text(
                '#!/bin/sh\n[ "$7" = broken ] && exit 3\n'
                'while [ "$1" != -o ]; do shift; done; echo built >"$2"\n'
            )
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
            out = Path(tmp, "target", "app.wasm")
            self.assertEqual(build.main(["app", "-o", str(out), "--componentize-py", str(fake),
                                         "-q"]), 0)
            self.assertEqual(out.read_text(), "built\n")
            with contextlib.redirect_stderr(io.StringIO()) as stderr:
                self.assertEqual(build.main(["broken", "-o", str(out), "--componentize-py",
                                             str(fake), "-q"]), 1)
            self.assertIn("componentize-py failed (exit 3)", stderr.getvalue())
            self.assertEqual(out.read_text(), "built\n")
            self.assertEqual(sorted(p.name for p in out.parent.iterdir()), ["app.wasm"])


if __name__ == "__main__":
    unittest.main()
