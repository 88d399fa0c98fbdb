"""The scan: incremental, resumable after SIGKILL with an identical table, per-family versions; CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pandas as pd

from conftest import ROOT, cli_paused_after, import_and_scan
from fer_core import datasets, store
from fer_core.signals import quality


def _tables(name):
    ds = datasets.load(name)
    return {f: store.load_family(ds, f) for f in ("quality", "duplicates")}


def test_resume_after_sigkill_gives_identical_table(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "clean")            # uninterrupted reference
    import_and_scan(tmp_path, fer_sample, "killed", scan=False)
    proc = cli_paused_after(tmp_path, ["--quiet", "scan", "killed", "--workers", "1", "--batch-size", "16"],
                            "fer_core.store:_write_part", after=5, first_arg_has="/quality/")
    parts = store.family_dir(datasets.load("killed"), "quality") / "parts"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_parts = len(list(parts.glob("part-*.parquet")))
    assert 5 <= n_parts < len(fer_sample) // 16, "the scan should have been killed midway"
    assert not (parts.parent / "table.parquet").exists()
    res = store.scan("killed", workers=1, batch_size=16)
    assert res.reused["quality"] >= 5 * 16 and res.computed["quality"] < len(fer_sample)
    clean, killed = _tables("clean"), _tables("killed")
    for f in clean:
        pd.testing.assert_frame_equal(clean[f], killed[f])
    c = store.load_derived(datasets.load("clean"), "duplicates", "pairs")
    k = store.load_derived(datasets.load("killed"), "duplicates", "pairs")
    pd.testing.assert_frame_equal(c, k)


def test_second_scan_is_cached_and_version_bump_recomputes_only_that_family(tmp_path, fer_sample, monkeypatch):
    import_and_scan(tmp_path, dict(list(fer_sample.items())[:100]), "v")
    res = store.scan("v", workers=1)
    assert res.computed == {"quality": 0, "duplicates": 0}
    before = _tables("v")["duplicates"]
    dup_mtime = (store.family_dir(datasets.load("v"), "duplicates") / "table.parquet").stat().st_mtime_ns
    monkeypatch.setattr(quality.Quality, "version", quality.VERSION + 1)
    res = store.scan("v", workers=1)
    assert res.computed == {"quality": 100, "duplicates": 0}
    assert (store.family_dir(datasets.load("v"), "duplicates") / "table.parquet").stat().st_mtime_ns == dup_mtime
    pd.testing.assert_frame_equal(before, _tables("v")["duplicates"])
    assert store.family_status("v")["quality"]["complete"]


def test_parallel_scan_equals_serial(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "serial", workers=1, batch_size=50)
    import_and_scan(tmp_path, fer_sample, "parallel", workers=2, batch_size=64)
    a, b = _tables("serial"), _tables("parallel")
    for f in a:
        pd.testing.assert_frame_equal(a[f], b[f])


def test_cli_scan_decide_recipe(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "cli", scan=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def run(*a):
        return subprocess.run([sys.executable, "-m", "fer_core", *a], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=300)

    r = run("decide", "cli")
    assert r.returncode == 1 and "Run a scan first" in r.stderr
    r = run("scan", "cli")
    assert r.returncode == 0 and f"quality: {len(fer_sample):,} computed" in r.stdout and "scan" in r.stderr
    r = run("recipe", "cli", "--out", str(tmp_path / "r.yaml"))
    assert r.returncode == 0 and (tmp_path / "r.yaml").exists()
    out = tmp_path / "dec.csv"
    r = run("decide", "cli", "--recipe", str(tmp_path / "r.yaml"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "kept" in r.stdout and "per reason" in r.stdout and "decided in" in r.stdout
    dec = pd.read_csv(out)
    assert len(dec) == len(fer_sample)
    for col in ("id", "path", "split", "usage", "label", "keep", "reasons", "sharpness", "brightness", "contrast",
                "edge_density", "entropy", "uniformity", "phash", "pixel_hash"):
        assert col in dec.columns
    r2 = run("decide", "cli", "--out", str(tmp_path / "dec.parquet"))
    assert r2.returncode == 0
    p = pd.read_parquet(tmp_path / "dec.parquet")
    assert p["keep"].tolist() == dec["keep"].tolist()  # same recipe either way (data-derived default)


def test_full_fer2013_decide_summary_makes_sense(fer2013_scanned):
    from fer_core import decisions, recipe

    cache, _ = fer2013_scanned
    inp = decisions.load_inputs("fer2013", cache)
    r = recipe.default_recipe(inp.signals)
    d = decisions.run(inp, r)
    s = recipe.summarize(inp.signals, d)
    assert s["by_split"]["val"]["rejected"] == s["by_split"]["test"]["rejected"] == 0
    assert 0.02 < s["rejected"] / s["by_split"]["train"]["kept"] < 0.25
    # FER2013 has >1,500 pixel-identical duplicate groups and train↔test copies
    assert s["duplicate_groups"] > 1500 and s["eval_leaked"]["test"] > 200 and s["train_leak_copies"] > 500
    for name in ("sharpness", "duplicate", "leak"):
        assert s["by_reason"][name] > 0
    assert s["by_reason"]["sharpness"] < 0.02 * 28709   # a modest data-derived cut
