"""CI can never go green by skipping: without ../shared, a test that needs it fails when CI=true."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def _run_inner(tmp_path, ci: bool) -> str:
    (tmp_path / "test_inner.py").write_text(
        "from pathlib import Path\n"
        "import conftest\n"
        "conftest.FER_ZIP = Path('/nonexistent/archive.zip')\n"
        "def test_needs_data(fer_zip):\n"
        "    assert fer_zip.exists()\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    env["PYTHONPATH"] = f"{ROOT / 'tests'}{os.pathsep}{ROOT}"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "-rA",
                        "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    return r.stdout + r.stderr


def test_missing_shared_data_fails_in_ci_and_skips_elsewhere(tmp_path):
    out = _run_inner(tmp_path, ci=True)
    assert ("1 error" in out or "1 failed" in out) and "CI=true" in out and "skipped" not in out, out
    out = _run_inner(tmp_path, ci=False)
    assert "1 skipped" in out, out
