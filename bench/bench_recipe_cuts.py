"""What a recipe removes from the training split, cut by cut: the share of each class each reason takes, and — where
the dataset's images carry crowd votes (FER+ through a link) — how often the crowd agrees with the given label of
what each cut removes against what it keeps (issue 17: why the default recipe does or does not beat raw).

    python bench/bench_recipe_cuts.py --cache DIR [--name fer2013] [--recipe R.yaml | --ab-id crowd-ab]

No training: this reads the decisions only (seconds). With ``--runs RAW_ID,CURATED_ID`` it also tests, without
training, whether the curated model's loss against raw is a class-prior shift: the curated run's stored test
probabilities re-weighted by (source share / kept share) per class — Bayes' correction for a prior shift — and
paired against raw on every stored yardstick.

``--write-ablations DIR`` writes the recipe minus one cut at a time (``-keepdups``: duplicate copies kept, leaked
copies still dropped; ``-noquality``: the image-quality filters off; ``-nolabel``: the label cut off), each to be
trained as the curated arm of its own A/B against the same raw runs (``bench_ab.py --recipe R --baseline crowd-ab``).
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from _common import machine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--name", default="fer2013")
    ap.add_argument("--recipe", default=None, help="a recipe file (default: the A/B's recipe, else the default)")
    ap.add_argument("--ab-id", default="crowd-ab")
    ap.add_argument("--runs", default=None, help="RAW_RUN_ID,CURATED_RUN_ID: the post-hoc prior check")
    ap.add_argument("--write-ablations", default=None, metavar="DIR",
                    help="write the recipe minus one cut at a time into DIR (then train each with bench_ab.py)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    from fer_core import recipe as recipe_mod
    from fer_core.recipe.vocab import reason_bit, reason_names
    from fer_core.train import ab
    from fer_core.workspace import Workspace

    ws = Workspace(args.name, args.cache)
    if args.recipe:
        rec = recipe_mod.Recipe.load(args.recipe)
    else:
        doc = ab.load_ab(args.name, args.ab_id, args.cache)
        rec = recipe_mod.Recipe.from_dict(doc["recipe"]) if doc else ws.default_recipe()
    d = ws.decide(rec)
    sig = ws.inputs().signals.set_index("id").reindex(d["id"])
    train = (sig["split"] == "train").to_numpy()
    d = d[train].reset_index(drop=True)
    label = sig["label"].to_numpy()[train]
    removed = ~d["keep"].to_numpy()
    reasons = d["reasons"].to_numpy()
    classes = pd.Series(label).value_counts()
    crowd = sig["crowd_label"].to_numpy()[train] if "crowd_label" in sig.columns else None
    agree = (crowd == label) if crowd is not None else None
    print(f"recipe {rec.name} [{rec.fingerprint()}] on {args.name}: {len(d):,} training images, {int(removed.sum()):,} "
          f"removed ({removed.mean() * 100:.1f}%)")
    cols = list(classes.index)
    print("| cut | removes | alone | " + " | ".join(cols) + " | crowd agrees with the given label |")
    print("|---|---|---|" + "---|" * len(cols) + "---|")
    for n in reason_names():
        m = ((reasons & reason_bit(n)) > 0) & removed
        if not m.any():
            continue
        alone = int((m & (reasons == reason_bit(n))).sum())
        share = pd.Series(label[m]).value_counts().reindex(cols).fillna(0) / classes * 100
        ag = f"{agree[m].mean() * 100:.1f}%" if agree is not None else "—"
        print(f"| {n} | {int(m.sum()):,} | {alone:,} | " + " | ".join(f"{v:.1f}%" for v in share) + f" | {ag} |")
    per = pd.Series(removed).groupby(label).mean().reindex(cols) * 100
    print("| **all cuts** | " + f"{int(removed.sum()):,} | | " + " | ".join(f"**{v:.1f}%**" for v in per)
          + (f" | {agree[removed].mean() * 100:.1f}% (kept: {agree[~removed].mean() * 100:.1f}%) |"
             if agree is not None else " | — |"))
    print("training images per class, before → after: " + ", ".join(
        f"{c} {int(classes[c]):,} → {int(classes[c] - (removed & (label == c)).sum()):,}" for c in cols))
    out = {"recipe": rec.fingerprint(), "removed": int(removed.sum()),
           "per_class_removed_pct": {c: float(per[c]) for c in cols}}
    print(json.dumps(out))
    if args.write_ablations:
        write_ablations(ws, rec, args.write_ablations)
    if args.runs:
        posthoc(args.name, *args.runs.split(","), args.cache)


def ablations(rec) -> dict:
    """The recipe minus one cut at a time. The leak cut stays in all but ``keepall`` (a training copy of a test image
    is what makes a score dishonest): ``keepall`` keeps every copy, leaked ones included — the duplicate and leak
    cuts both off, so against ``keepdups`` it measures the leak cut, and only on the test images without a copy in
    training (the A/B's leakage-aware column) is it a fair score."""
    from fer_core.recipe.vocab import LABEL_CUTS

    quality = [c for c, f in rec.filters.items() if f.enabled and c not in LABEL_CUTS]
    noq = rec
    for c in quality:
        noq = noq.with_filter(c, enabled=False)
    nolabel = rec
    for c in LABEL_CUTS:
        if c in rec.filters:
            nolabel = nolabel.with_filter(c, enabled=False)
    return {"keepdups": rec.with_duplicates(policy="keep_all", drop_leaked=True),
            "noquality": noq,
            "nolabel": nolabel,
            "keepall": rec.with_duplicates(policy="keep_all", drop_leaked=False)}


def write_ablations(ws, rec, out_dir: str) -> None:
    from pathlib import Path

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    rec.save(Path(out_dir) / f"{rec.name}.yaml")      # the recipe itself (another A/B of it: bench_ab --recipe)
    print(f"{Path(out_dir) / f'{rec.name}.yaml'}: [{rec.fingerprint()}] the recipe itself")
    for key, r in ablations(rec).items():
        r = r.replace(name=f"{rec.name}-{key}")
        path = Path(out_dir) / f"{r.name}.yaml"
        r.save(path)
        d = ws.decide(r)
        sig = ws.inputs().signals.set_index("id").reindex(d["id"])
        tr = (sig["split"] == "train").to_numpy()
        print(f"{path}: [{r.fingerprint()}] removes {int((~d['keep'].to_numpy()[tr]).sum()):,} training images")


def posthoc(name: str, raw_id: str, cur_id: str, cache: str) -> None:
    import numpy as np

    from fer_core.train import runs, yardstick
    from fer_core.train.evaluate import paired_difference

    raw, cur = runs.run_info(name, raw_id, cache), runs.run_info(name, cur_id, cache)
    classes = cur["config"]["classes"]
    kept = np.array([cur["config"]["train_label_counts"][c] for c in classes], float)
    src = np.array([raw["config"]["train_label_counts"][c] for c in classes], float)
    ratio = (src / src.sum()) / (kept / kept.sum())
    print("post-hoc prior correction of the curated run (weights " + ", ".join(
        f"{c} {r:.2f}" for c, r in zip(classes, ratio)) + "):")
    keys = [json.loads(p.read_text())["yardstick"] for p in (cur["dir"] / "yardsticks").glob("*.json")]
    for key in [f"{name}:test"] + [k for k in keys if k != f"{name}:test"]:
        if not yardstick.current(cur["dir"], key, name, cache):
            yardstick.evaluate_run(name, cur_id, key, cache)
        if not yardstick.current(raw["dir"], key, name, cache):
            yardstick.evaluate_run(name, raw_id, key, cache)
        (_, a), (_, b) = yardstick.load(raw["dir"], key), yardstick.load(cur["dir"], key)
        y = a["y"]
        adj = b["probs"] * ratio
        ok = {"raw": a["probs"].argmax(1) == y, "curated": b["probs"].argmax(1) == y, "corrected": adj.argmax(1) == y}
        d = paired_difference(ok["raw"][None], ok["corrected"][None])
        lo, hi = d["ci95"]
        rec = {k: [float(v[y == i].mean()) for i in range(len(classes))] for k, v in ok.items()}
        print(f"  {key}: raw {ok['raw'].mean():.4f}, curated {ok['curated'].mean():.4f}, curated corrected "
              f"{ok['corrected'].mean():.4f} (corrected − raw {d['difference'] * 100:+.2f}, {lo * 100:+.2f} to "
              f"{hi * 100:+.2f}); recall raw / curated / corrected: " + ", ".join(
                  f"{c} {rec['raw'][i]:.2f}/{rec['curated'][i]:.2f}/{rec['corrected'][i]:.2f}"
                  for i, c in enumerate(classes)))


if __name__ == "__main__":
    main()
