"""Server-side work for one slider move on the Quality page over the full FER2013.

Drives the real page with streamlit's AppTest (the same script run a browser triggers, minus the
network): imports + scans FER2013 into a temporary cache, opens the Quality page, then moves the
sharpness slider N times and times each script run. Also times the pieces the page does per move.

    python bench/bench_ui.py [--moves 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from _common import FER_ZIP, ROOT, machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FER_CACHE_DIR"] = cache
        from fer_core import datasets, decisions, recipe, store

        datasets.import_dataset(FER_ZIP, "fer2013")
        store.scan("fer2013")
        from streamlit.testing.v1 import AppTest

        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.run()
        at.switch_page("pages/2_Quality.py")
        t0 = time.perf_counter()
        at.run()
        print(f"first Quality page run (loads the signal table once per server): {time.perf_counter() - t0:.2f} s")
        assert not at.exception, at.exception
        slider = at.select_slider[0]
        opts = [float(o.replace(",", "")) for o in slider.options]
        rng = np.random.default_rng(0)
        times, script = [], []
        for k in range(args.moves):
            v = opts[int(rng.integers(5, len(opts) // 3))]
            at.select_slider[0].set_value(v)
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
            script.append(at.session_state["_last_run_ms"] / 1000)
            assert not at.exception, at.exception
        print(f"one slider move, server-side script run as the page measures it (setup to last element): "
              f"median {statistics.median(script) * 1000:.0f} ms, p90 {np.percentile(script, 90) * 1000:.0f} ms, "
              f"max {max(script) * 1000:.0f} ms")
        print(f"one slider move, AppTest round trip incl. its own element-tree parsing (decide + histogram + 3 montages + sidebar summary), "
              f"{args.moves} moves: median {statistics.median(times) * 1000:.0f} ms, "
              f"p90 {np.percentile(times, 90) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")

        # the pieces
        from ui import quality_view as qv
        inputs = decisions.load_inputs("fer2013")
        rec = recipe.default_recipe(inputs.signals)
        sig = inputs.signals
        vals = sig["sharpness"].to_numpy(np.float64)
        scope = (sig["split"] == "train").to_numpy()

        def timed(fn, n=20):
            fn()
            ts = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return statistics.median(ts) * 1000

        print(f"  decide: {timed(lambda: decisions.run(inputs, rec)):.1f} ms")
        print(f"  histogram bins + view data: "
              f"{timed(lambda: qv.histogram_data('sharpness', *qv.hist_bins(vals[scope], None, True), rec.filters['sharpness'], True)):.1f} ms")
        print(f"  montage sets: {timed(lambda: qv.montage_sets('sharpness', vals, scope, rec.filters['sharpness'])):.1f} ms")
        from fer_core.montage import montage
        ds = datasets.load("fer2013")
        paths = [ds.image_path(p) for p in sig["path"].iloc[:24]]
        print(f"  one 24-image montage (read + composite): {timed(lambda: montage(paths, ncols=12, tile=64)):.1f} ms")


if __name__ == "__main__":
    main()
