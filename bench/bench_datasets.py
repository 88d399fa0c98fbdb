"""Import + scan of every real dataset in ../shared/datasets, and ExpW's face-crop throughput (issue 18).

    python bench/bench_datasets.py [--only fer2013,ckplus,expw,ferplus] [--workdir DIR]

Each dataset is imported and scanned (quality + duplicates) in a child process of its own, into a fresh cache, so
its peak RSS is its own. ExpW's crops are timed with 1 and 2 threads on the same staged files. Prints the load
average next to every figure: on a shared 2-core machine read differences under ~15% as noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine

SHARED = (ROOT.parent / "shared" / "datasets").resolve()
ZIPS = {"fer2013": SHARED / "fer2013" / "archive.zip", "ckplus": SHARED / "ckplus" / "archive.zip",
        "expw": SHARED / "expw" / "archive.zip", "ferplus": SHARED / "ferplus" / "archive.zip"}

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from fer_core import datasets, store
name, zip_, cache = sys.argv[2], sys.argv[3], sys.argv[4]
t0 = time.time(); res = datasets.import_dataset(zip_, name, cache=cache); t1 = time.time()
store.scan(name, cache=cache); t2 = time.time()
print(json.dumps({"images": res.n_images, "rejected": res.n_rejected, "import_s": t1 - t0, "scan_s": t2 - t1,
                  "peak_rss_mib": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}))
"""


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(ZIPS))
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-datasets-"))
    for name in args.only.split(","):
        cache = work / f"cache-{name}"
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), name, str(ZIPS[name]), str(cache)],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"{name:8s} {r['images']:>6,} images ({r['rejected']} rejected): import {r['import_s']:6.1f} s, "
              f"scan {r['scan_s']:5.1f} s, peak RSS {r['peak_rss_mib']:,.0f} MiB  [load {load()}]", flush=True)
    if "expw" in args.only.split(","):
        import zipfile

        from fer_core.sources import registry

        stage = work / "expw-staged"
        with zipfile.ZipFile(ZIPS["expw"]) as zf:
            zf.extractall(stage)
        for workers in (1, 2, 1, 2):
            t0 = time.time()
            recs = list(registry._read_expw(stage, workers=workers))
            dt = time.time() - t0
            n = sum(not r.problem for r in recs)
            print(f"expw crop, {workers} thread(s): {n:,} faces in {dt:.2f} s = {n / dt:,.0f} faces/s  [load {load()}]")


if __name__ == "__main__":
    main()
