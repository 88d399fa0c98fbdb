"""How much one standard run differs from another of the same arm: the spread the A/B's verdicts have to see past.

    python bench/bench_run_spread.py [--dir bench/ab-runs/fer2013] [--ab-id crowd-steps --ab-id cosine-steps]

Reads carried (or cached) runs only — no training: per A/B and arm, each seed's accuracy on FER2013's test split
and on every yardstick, their mean and standard deviation over seeds, and how often two runs of the arm predict
different classes for the same yardstick image (the model-level spread behind the accuracy's). Then the paired
per-seed differences of every arm from raw. A raw baseline reused from another A/B is followed there.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

import _common  # the repository's root on sys.path; carried_ab_runs


def _load(root: Path, rid: str) -> dict | None:
    d = root / "runs" / rid
    if not (d / "metrics.json").is_file():
        return None
    m = json.loads((d / "metrics.json").read_text())
    out = {"seed": int(m["seed"]), "test": m["test"]["accuracy"], "yard": {}}
    for f in sorted((d / "yardsticks").glob("*.npz")) if (d / "yardsticks").is_dir() else []:
        with np.load(f) as z:
            pred = z["probs"].argmax(1)
            out["yard"][f.stem] = {"ids": z["ids"], "pred": pred, "acc": float((pred == z["y"]).mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="bench/ab-runs/fer2013", help="a carry folder (bench/ab_carry.py)")
    ap.add_argument("--ab-id", action="append", default=None, help="A/Bs to show (default: every one there)")
    args = ap.parse_args()
    root = Path(args.dir)
    ids = args.ab_id or sorted(p.stem for p in (root / "ab").glob("*.json"))
    for ab_id in ids:
        doc = json.loads((root / "ab" / f"{ab_id}.json").read_text())
        changes = doc.get("changes") or {}
        print(f"A/B {ab_id}: preset {doc['preset']}" + (f" {changes}" if changes else "") +
              f", budget {doc.get('budget', 'passes')}")
        runs = {a: [x for x in (_load(root, r) for r in rids) if x] for a, rids in _common.carried_ab_runs(root, doc).items()}
        keys = sorted({k for rs in runs.values() for x in rs for k in x["yard"]})
        print("| arm | seeds | FER2013 test: each | mean (sd) | " +
              " | ".join(f"{k}: each | mean (sd) | predictions differ, run pairs" for k in keys) + " |")
        print("|---|---|---|---|" + "---|---|---|" * len(keys))
        for arm, rs in runs.items():
            if not rs:
                continue
            rs = sorted(rs, key=lambda x: x["seed"])
            t = np.array([x["test"] for x in rs]) * 100
            cells = [arm, ",".join(str(x["seed"]) for x in rs), " / ".join(f"{v:.2f}" for v in t),
                     f"{t.mean():.2f}" + (f" ({t.std(ddof=1):.2f})" if len(t) > 1 else "")]
            for k in keys:
                ys = [x["yard"][k] for x in rs if k in x["yard"]]
                a = np.array([y["acc"] for y in ys]) * 100
                dis = [float((p["pred"] != q["pred"]).mean()) * 100 for p, q in itertools.combinations(ys, 2)
                       if np.array_equal(p["ids"], q["ids"])]
                cells += [" / ".join(f"{v:.2f}" for v in a),
                          f"{a.mean():.2f}" + (f" ({a.std(ddof=1):.2f})" if len(a) > 1 else ""),
                          (f"{np.mean(dis):.1f}% ({len(dis)})" if dis else "—")]
            print("| " + " | ".join(cells) + " |")
        raw = {x["seed"]: x for x in runs.get("raw", [])}
        for arm, rs in runs.items():
            if arm == "raw" or not rs:
                continue
            for k in keys:
                d = [(x["yard"][k]["acc"] - raw[x["seed"]]["yard"][k]["acc"]) * 100 for x in rs
                     if x["seed"] in raw and k in x["yard"] and k in raw[x["seed"]]["yard"]]
                if d:
                    print(f"  {arm} − raw on {k}, per seed: " + " / ".join(f"{v:+.2f}" for v in d) +
                          f"; mean {np.mean(d):+.2f}" + (f", sd {np.std(d, ddof=1):.2f}" if len(d) > 1 else ""))
        print()


if __name__ == "__main__":
    main()
