"""FER+ ↔ FER2013: import FER+, link it to FER2013, and print what the link and the votes say (issue 17).

    python bench/bench_link.py --cache DIR     # DIR: a cache where FER2013 is imported (and scanned)

Prints: FER+ import time; link time (pixel decoding of each side is cached after its first use, so the first
link includes it); how many images of each side found a partner; the distribution of the mean per-pixel
difference of the nearest candidates (the valley that sets links.MAX_MEAN); and how often FER2013's own label is
the crowd majority, per usage (the yardstick problem of issue 17), with the share whose label got 0 of 10 votes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import ROOT, machine, peak_rss_mib

FERPLUS_ZIP = (ROOT.parent / "shared" / "datasets" / "ferplus" / "archive.zip").resolve()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    from fer_core import crowd, datasets, links, store
    from fer_core.train.data import pixels

    t0 = time.time()
    res = datasets.import_dataset(FERPLUS_ZIP, "ferplus", cache=args.cache)
    print(f"FER+ import: {res.n_images:,} images, {res.n_rejected:,} rejected, {time.time() - t0:.1f} s "
          f"(votes written by the import; link refresh included)")
    t0 = time.time()
    store.scan("ferplus", cache=args.cache)
    print(f"FER+ scan (quality + duplicates): {time.time() - t0:.1f} s")
    for cold in (True, False):
        t0 = time.time()
        r = links.link("fer2013", "ferplus", cache=args.cache)
        print(f"link ({'first: decodes FER+ pixels' if cold else 'again: pixels cached'}): {time.time() - t0:.1f} s — "
              + r.summary())
    # the candidates' mean difference, before the threshold: what separates JPEG noise from another picture
    ia, pa = pixels(datasets.load("ferplus", args.cache))
    ib, pb = pixels(datasets.load("fer2013", args.cache))
    m = links.match(pa, pb, max_mean=255.0, k=2)
    hist, edges = np.histogram(m["mean_diff"], bins=[0, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 20, 40, 256])
    print("nearest-2 candidates by mean |difference| (grey levels):")
    for a, b, n in zip(edges[:-1], edges[1:], hist):
        print(f"  {a:>5g}–{b:<5g} {n:>7,}")
    s = store.load_signals("fer2013", args.cache)
    u = crowd.usable(s)
    for usage in ("Training", "PublicTest", "PrivateTest"):
        sel = u & (s["usage"] == usage).to_numpy()
        agree = float((s.loc[sel, "label"] == s.loc[sel, "crowd_label"]).mean())
        zero = float((s.loc[sel, "crowd_given"] == 0).mean())
        print(f"FER2013 {usage}: {sel.sum():,} images with a crowd majority; label = majority {agree:.1%}; "
              f"label got 0 of 10 votes {zero:.1%}")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
