"""How much of a yardstick's gain is a change of class prior: every run re-weighted to another training set's class
shares, without retraining.

    python bench/bench_prior_shift.py [--dir bench/ab-runs/fer2013] [--ab-id cosine-steps] [--key ferplus-test]
                                      [--to-arm crowd]

Reads carried (or cached) runs only. Each run's stored yardstick probabilities are multiplied per class by
(share of the class in the --to-arm run's training labels) / (share in the run's own training labels) — Bayes'
correction for a change of class prior, which moves a model's decisions towards the other training set's labelling
convention and learns nothing about any face — and scored again: accuracy, macro-F1 and mean recall per class
(balanced accuracy), on the whole yardstick and without its leaked images. The shares come from the runs' training
labels (config.json `train_label_counts`), never from the test split. Figures per run and the mean per arm.

Why: on FER+ Test the crowd relabel beats raw by ~13 points of accuracy; if a prior shift alone gives raw most of
that, accuracy on this yardstick mostly rewards adopting the crowd's class shares (neutral twice as often as
FER2013's labels), and a metric that a prior shift cannot buy (mean recall per class) has to be read beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

import _common  # the repository's root on sys.path; carried_ab_runs
from fer_core.train import ab


def _scores(y: np.ndarray, pred: np.ndarray, keep: np.ndarray) -> tuple[float, float, float]:
    y, pred = y[keep], pred[keep]
    return (float((pred == y).mean()), float(f1_score(y, pred, average="macro")),
            float(balanced_accuracy_score(y, pred)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="bench/ab-runs/fer2013", help="a carry folder (bench/ab_carry.py)")
    ap.add_argument("--ab-id", default="cosine-steps")
    ap.add_argument("--key", default="ferplus-test", help="the yardstick file's stem (DATASET-SPLIT)")
    ap.add_argument("--to-arm", default="crowd", help="the arm whose training class shares the runs are moved to")
    args = ap.parse_args()
    root = Path(args.dir)
    runs = _common.carried_ab_runs(root, json.loads((root / "ab" / f"{args.ab_id}.json").read_text()))
    done = {a: [r for r in rids if (root / "runs" / r / "yardsticks" / f"{args.key}.npz").is_file()]
            for a, rids in runs.items()}
    if not done.get(args.to_arm):
        raise SystemExit(f"no finished {args.to_arm} run in {args.ab_id}: nothing to take the class shares from")
    target = json.loads((root / "runs" / done[args.to_arm][0] / "config.json").read_text())["train_label_counts"]
    print(f"A/B {args.ab_id}, yardstick {args.key}; class shares of {args.to_arm}'s training labels "
          f"({done[args.to_arm][0]}): " + ", ".join(f"{c} {n / sum(target.values()):.1%}" for c, n in target.items()))
    print("| arm | seed | shifted | accuracy | macro-F1 | mean recall per class | without leaked: accuracy | "
          "macro-F1 | mean recall per class |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    means: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    for arm, rids in done.items():
        for rid in rids:
            d = root / "runs" / rid
            cfg = json.loads((d / "config.json").read_text())
            classes, own = cfg["classes"], cfg["train_label_counts"]
            w = ab.prior_weights_to(own, target, classes)
            with np.load(d / "yardsticks" / f"{args.key}.npz") as z:
                y, p, leaked = z["y"], z["probs"], z["leaked"].astype(bool)
            everything = np.ones(len(y), bool)
            for shifted, probs in (("no", p), ("yes", p * w)):
                if arm == args.to_arm and shifted == "yes":
                    continue
                pred = probs.argmax(1)
                row = _scores(y, pred, everything) + _scores(y, pred, ~leaked)
                means.setdefault((arm, shifted), []).append(row)
                print(f"| {arm} | {cfg['seed']} | {shifted} | " + " | ".join(
                    f"{v * 100:.2f}%" if i % 3 != 1 else f"{v:.3f}" for i, v in enumerate(row)) + " |")
    print("\nmean over seeds:")
    print("| arm | seeds | shifted | accuracy | macro-F1 | mean recall per class | without leaked: accuracy | "
          "macro-F1 | mean recall per class |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for (arm, shifted), rows in means.items():
        m = np.mean(rows, axis=0)
        print(f"| {arm} | {len(rows)} | {shifted} | " + " | ".join(
            f"{v * 100:.2f}%" if i % 3 != 1 else f"{v:.3f}" for i, v in enumerate(m)) + " |")


if __name__ == "__main__":
    main()
