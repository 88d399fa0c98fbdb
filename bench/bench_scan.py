"""Full FER2013 scan vs cleanvision's Imagelab.find_issues() on the same 35,887 files, in the same run;
then `decide` on FER2013 and on a synthetic 1,000,000-row signal table.

    .venv/bin/pip install -r requirements-bench.txt
    python bench/bench_scan.py [--skip-cleanvision]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from _common import FER_ZIP, ROOT, machine


def scan_in_subprocess(cache: str) -> tuple[float, float]:
    """Time `python -m fer_core scan fer2013` from a fresh signal store; peak RSS of it and its workers."""
    code = ("import time,resource,sys; from fer_core import store; t=time.perf_counter(); "
            "store.scan('fer2013', cache=sys.argv[1]); dt=time.perf_counter()-t; "
            "self_=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "kids=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; print(dt, max(self_, kids))")
    out = subprocess.run([sys.executable, "-c", code, cache], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True).stdout.split()
    return float(out[0]), float(out[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-cleanvision", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as cache:
        from fer_core import datasets, decisions, recipe

        datasets.import_dataset(FER_ZIP, "fer2013", cache=cache)
        ds = datasets.load("fer2013", cache)
        times, rss = [], []
        for _ in range(args.runs):
            import shutil
            shutil.rmtree(ds.home / "signals", ignore_errors=True)
            t, m = scan_in_subprocess(cache)
            times.append(t)
            rss.append(m)
        ours = statistics.median(times)
        print(f"fer_core scan (quality + duplicates incl. pairs), {len(ds.catalog):,} images, {os.cpu_count()} cores: "
              f"median {ours:.2f} s of {[round(t, 2) for t in times]} → {len(ds.catalog) / ours:,.0f} images/s; "
              f"peak RSS {max(rss):.0f} MiB (largest process)")
        if not args.skip_cleanvision:
            from cleanvision import Imagelab

            files = [str(ds.images / p) for p in ds.catalog["path"]]
            t0 = time.perf_counter()
            lab = Imagelab(filepaths=files)
            lab.find_issues()
            cv = time.perf_counter() - t0
            print(f"cleanvision 0.3.7 Imagelab.find_issues(), same files: {cv:.1f} s → "
                  f"{len(files) / cv:,.0f} images/s")
            print(f"ratio: fer_core is {cv / ours:.1f}× faster")
            print(lab.issue_summary.to_string())

        inputs = decisions.load_inputs("fer2013", cache)
        rec = recipe.default_recipe(inputs.signals)
        decisions.run(inputs, rec)
        ts = []
        for _ in range(30):
            t0 = time.perf_counter()
            decisions.run(inputs, rec)
            ts.append(time.perf_counter() - t0)
        print(f"decide on FER2013 ({len(inputs.signals):,} rows, {len(inputs.pairs.ia):,} candidate pairs): "
              f"median {statistics.median(ts) * 1000:.1f} ms, max {max(ts) * 1000:.1f} ms")

    rng = np.random.default_rng(0)
    n = 1_000_000
    sig = pd.DataFrame({"id": np.char.add("img", np.char.zfill(np.arange(n).astype(str), 7)),
                        "split": rng.choice(["train", "val", "test"], n, p=[0.8, 0.1, 0.1]),
                        "label": rng.choice(["angry", "happy", "sad", "neutral"], n)})
    for col, gen in [("sharpness", lambda: rng.lognormal(7.6, 0.6, n)), ("brightness", lambda: rng.normal(128, 35, n)),
                     ("contrast", lambda: rng.lognormal(3.9, 0.3, n)), ("edge_density", lambda: rng.normal(0.23, 0.04, n)),
                     ("entropy", lambda: rng.normal(7.2, 0.3, n)), ("uniformity", lambda: rng.beta(4, 16, n)),
                     ("dark_clip", lambda: rng.beta(0.3, 20, n)), ("bright_clip", lambda: rng.beta(0.3, 20, n)),
                     ("min_side", lambda: np.full(n, 48.0)), ("aspect_dev", lambda: np.zeros(n))]:
        sig[col] = gen()
    m = 60_000
    ia = rng.integers(0, n - 3, m)
    pairs = recipe.Pairs(ia, ia + rng.integers(1, 3, m), (rng.integers(0, 7, m) * 2).astype(np.int16),
                         rng.integers(0, 4, m).astype(np.int8))
    rec = recipe.default_recipe(sig)
    recipe.decide(sig, rec, None, pairs)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        recipe.decide(sig, rec, None, pairs)
        ts.append(time.perf_counter() - t0)
    print(f"decide on a synthetic 1,000,000-row table with {m:,} candidate pairs: median {statistics.median(ts):.3f} s")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
