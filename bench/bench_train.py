"""Training throughput per preset, with and without augmentation, on real FER2013 pixels.

    python bench/bench_train.py [--cache DIR] [--images 6144]

Each measurement trains one epoch of the preset's model on N real training images (after a short warm-up
epoch) through the same feeder the runs use, and times prediction (flip TTA doubles it).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from _common import FER_ZIP, machine, peak_rss_mib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None)
    ap.add_argument("--images", type=int, default=6144)
    ap.add_argument("--presets", default="smoke,labels,standard,full", help="which rows to measure (comma-separated)")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    from fer_core import datasets
    from fer_core.train import augment, data as data_mod, labels as L, model as model_mod, presets
    from fer_core.train.runner import _compile, predict

    cache = args.cache
    if cache is None:
        cache = tempfile.mkdtemp()
        datasets.import_dataset(FER_ZIP, "fer2013", cache=cache)
    ds = datasets.load("fer2013", cache)
    t = time.perf_counter()
    ids, px = data_mod.pixels(ds, 48)
    print(f"pixel array of {len(ids):,} images (decoded once, then cached): {time.perf_counter() - t:.1f} s")
    cat = ds.catalog.sort_values("id")
    tr = (cat["split"] == "train").to_numpy()
    x = px[tr][: args.images]
    classes = data_mod.class_order(cat["label"])
    y = np.array([classes.index(l) for l in cat["label"].to_numpy()[tr][: args.images]])
    model_mod.configure_device(0)
    rows = []
    every = {"smoke": presets.PRESETS["smoke"], "labels": L.LABELS_PRESET, "standard": presets.PRESETS["standard"],
             "full": presets.PRESETS["full"]}
    for p in [every[k] for k in args.presets.split(",")]:
        n = len(x) if p.model == "compact" else 768
        for aug in ("none", p.augment):
            kw = {"width": p.width} if p.model == "compact" else {}
            m = model_mod.build(p.model, 48, len(classes), **kw)
            f = augment.make_feeder(x[:n], y[:n], p.batch_size, 0, aug)
            _compile(m, p, len(f))
            m.fit(augment.make_feeder(x[:512], y[:512], p.batch_size, 0, aug), epochs=1, verbose=0)
            t = time.perf_counter()
            m.fit(f, epochs=1, verbose=0)
            ips = n / (time.perf_counter() - t)
            t = time.perf_counter()
            predict(m, x[:n], tta=True)
            pps = n / (time.perf_counter() - t)
            rows.append((p.name, p.model, p.width if p.model == "compact" else "-", aug, m.count_params(), ips, pps))
            print(f"  {p.name:9s} {p.model:8s} width {str(rows[-1][2]):3s} augmentation {aug:8s} "
                  f"{m.count_params():>10,} params  train {ips:7.0f} img/s   predict+flip TTA {pps:7.0f} img/s", flush=True)
    print(f"peak RSS {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
