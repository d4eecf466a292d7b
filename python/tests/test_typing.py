"""The package type-checks (mypy --strict, less the two checks plain JSON replies cannot pass)."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

from daemon import REPO

# The checkout's copy (checking the installed one would put site-packages on mypy's path).
PKG = os.path.join(REPO, "python", "quantune")
FILES = ["__init__.py", "trial.py", "client.py", "study.py", "_toml.py"]


class TypingTest(unittest.TestCase):
    def test_mypy_strict(self) -> None:
        try:
            import mypy  # noqa: F401
        except ImportError:
            if os.environ.get("QUANTUNE_REQUIRE_TORCHAO") == "1":
                self.fail("the CI venv has no mypy (python/ci-requirements.txt)")
            self.skipTest("mypy is not installed")
        out = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-warn-return-any",
             "--no-warn-unused-ignores", "--ignore-missing-imports", "--cache-dir", os.devnull,
             *[os.path.join(PKG, f) for f in FILES]],
            capture_output=True, text=True, timeout=300, cwd=os.path.join(REPO, "python"),
        )
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertTrue(os.path.exists(os.path.join(PKG, "py.typed")))


if __name__ == "__main__":
    unittest.main()
