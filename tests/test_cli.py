"""The CLI: same engine, progress on stderr, clear errors, non-zero exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import FER_COUNTS, ROOT, zip_tree


def run_cli(*args, env_extra=None, timeout=600):
    env = dict(os.environ)
    env.update(env_extra or {})
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "fer_core", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_import_and_datasets_json(tmp_path, fer_sample):
    z = zip_tree(fer_sample, tmp_path / "s.zip")
    r = run_cli("import", str(z), "--name", "small")
    assert r.returncode == 0, r.stderr
    assert f"small: {len(fer_sample):,} images imported" in r.stdout
    assert "catalog" in r.stderr  # progress bar
    r = run_cli("datasets", "--json")
    assert r.returncode == 0
    info = json.loads(r.stdout)
    d = {x["name"]: x for x in info["imported"]}["small"]
    assert d["images"] == len(fer_sample)
    by_split_total = sum(sum(v.values()) for v in d["by_split"].values())
    by_usage_total = sum(sum(v.values()) for v in d["by_usage"].values())
    assert by_split_total == by_usage_total == len(fer_sample)
    assert set(d["by_usage"]) == {"Training", "PublicTest", "PrivateTest"}
    assert any(x["name"] == "fer2013" and x["kaggle_slug"] == "msambare/fer2013" for x in info["registry"])
    r = run_cli("datasets")
    assert "small: " in r.stdout and "msambare/fer2013" in r.stdout


def test_download_full_fer2013_via_cli(fake_kaggle):
    env = {"KAGGLE_USERNAME": fake_kaggle.username, "KAGGLE_KEY": fake_kaggle.key}
    r = run_cli("download", "fer2013", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert "fer2013: 35,887 images imported" in r.stdout
    assert "download" in r.stderr and ("MiB" in r.stderr or "M/" in r.stderr or "MB" in r.stderr)   # a byte bar
    info = json.loads(run_cli("datasets", "--json").stdout)
    d = {x["name"]: x for x in info["imported"]}["fer2013"]
    assert d["images"] == 35887
    totals = {lab: sum(v.get(lab, 0) for v in d["by_split"].values()) for lab in FER_COUNTS}
    assert totals == FER_COUNTS
    assert {u: sum(v.values()) for u, v in d["by_usage"].items()} == {"Training": 28709, "PublicTest": 3589,
                                                                     "PrivateTest": 3589}


def test_cli_errors_are_clear_and_nonzero(fake_kaggle, tmp_path):
    env = {"KAGGLE_USERNAME": fake_kaggle.username, "KAGGLE_KEY": "wrong-key-value"}
    r = run_cli("download", "fer2013", env_extra=env)
    assert r.returncode == 1
    assert "Error: Kaggle rejected the credentials" in r.stderr and "What to do:" in r.stderr
    assert "wrong-key-value" not in r.stderr + r.stdout
    r = run_cli("download", "nobody/nothing", env_extra={"KAGGLE_USERNAME": fake_kaggle.username,
                                                         "KAGGLE_KEY": fake_kaggle.key})
    assert r.returncode == 1 and "HTTP 404" in r.stderr
    r = run_cli("download", "fer2013")
    assert r.returncode == 1 and "No Kaggle credentials" in r.stderr
    r = run_cli("import", str(tmp_path / "missing"), "--name", "x")
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = run_cli("import", str(tmp_path), "--name", "Bad Name!")
    assert r.returncode == 1 and "not a valid dataset name" in r.stderr
    r = run_cli("bogus")
    assert r.returncode == 2
