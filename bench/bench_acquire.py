"""Download + import the full FER2013 from the local fake Kaggle server; print times and peak memory.

    python bench/bench_acquire.py
"""

from __future__ import annotations

import os
import tempfile
import time

from _common import FER_ZIP, StageTimer, machine, peak_rss_mib


def main() -> None:
    from fake_kaggle import FakeKaggle

    with tempfile.TemporaryDirectory() as tmp, FakeKaggle({"msambare/fer2013": FER_ZIP}) as fk:
        os.environ.update(fk.env(with_creds=False))
        os.environ["FER_CACHE_DIR"] = tmp
        from fer_core import acquire
        from fer_core.sources.kaggle import KaggleCredentials

        timer = StageTimer()
        t0 = time.perf_counter()
        res = acquire.download_and_import("fer2013", creds=KaggleCredentials(fk.username, fk.key), progress=timer)
        total = time.perf_counter() - t0
        print(f"machine: {machine()}")
        print(f"FER2013 download + import from the local fake Kaggle server: {total:.1f} s total, "
              f"{len(res.dataset.catalog):,} images, {res.n_rejected} rejected")
        print(timer.report())
        print(f"peak RSS of the process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
