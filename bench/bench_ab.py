"""Raw vs curated (vs relabel) on FER2013: the A/B of issue 7, and its report.

    python bench/bench_ab.py --cache DIR [--preset standard] [--seeds 3] [--ab-id ID] [--report-only]
                             [--baseline AB_ID] [--no-relabel-arm] [--uncapped]
                             [--arms raw,curated,control,relabel,crowd] [--eval-on ferplus:test]

Issue 17's A/B (the crowd's yardstick and the random-removal control) on FER2013:

    python -m fer_core --cache DIR import ../shared/datasets/ferplus/archive.zip --name ferplus
    python -m fer_core --cache DIR link fer2013 ferplus
    python bench/bench_ab.py --cache DIR --ab-id crowd-ab --arms raw,curated,control,relabel,crowd \
        --eval-on ferplus:test

Needs a cache where FER2013 is imported and scanned, with label signals (`python -m fer_core labels
fer2013`), so that the default recipe drops leaked copies, duplicate extras and the lowest label_quality.
The A/B is resumable: run the same command again (same --ab-id) and only the missing (seed, arm) runs are
trained; --report-only prints what has finished so far (partial results are labelled partial).
--baseline reuses the raw runs of an earlier A/B (its preset and settings, unless given) so that a second recipe
  costs only its own arms;
--recipe R.yaml starts a new A/B with that recipe instead of the default (one cut at a time: an ablation);
--uncapped drops the per-class cap on the label cut (the recipe the first FER2013 A/B ran).
"""

from __future__ import annotations

import argparse

from _common import machine


def report(doc: dict) -> None:
    from fer_core.train import ab

    res = doc.get("result") or {}
    print(f"A/B {doc['ab_id']}: preset {doc['preset']}, budget {doc.get('budget', 'passes')}, seeds {doc['seeds']}, "
          f"arms {doc['arms']}"
          + ("" if doc.get("complete") else "  [PARTIAL: not every run has finished]")
          + (f"; raw runs reused from A/B {doc['baseline']}" if doc.get("baseline") else ""))
    for note in res.get("notes", []):
        print(f"  NOTE: {note}")
    for arm, r in res.get("arms", {}).items():
        for x in r["runs"]:
            lo, hi = x["ci95"]["accuracy"]
            wl = x["accuracy_without_leaked"]
            print(f"  {arm:8s} seed {x['seed']}: test accuracy {x['accuracy']:.4f} (95% {lo:.4f}–{hi:.4f}), "
                  f"macro-F1 {x['macro_f1']:.4f}, without leaked {wl if wl is None else f'{wl:.4f}'}, "
                  f"{x['train_images']:,} training images, {x['epochs_run']} epochs"
                  + (f" of {x['images_per_epoch']:,} images" if x.get("images_per_epoch", x["train_images"])
                     != x["train_images"] else ""))
        if r["mean_accuracy"] is not None:
            sd = r["sd_accuracy"]
            print(f"  {arm:8s} mean {r['mean_accuracy']:.4f}" + (f" ± {sd:.4f} (sd over seeds)" if sd is not None else ""))
    for arm, d in res.get("differences", {}).items():
        base = d.get("against", "raw")
        print(f"  {arm.split('-')[0]} − {base} (seeds {d['seeds']}), full test split: {ab.verdict(d['full'], against=base)}")
        if d.get("without_leaked"):
            print(f"  {arm.split('-')[0]} − {base}, without leaked test images: "
                  f"{ab.verdict(d['without_leaked'], against=base)}")
    for arm, c in res.get("captured", {}).items():
        print(f"  {ab.captured_text(arm, c)}")
    for key, y in res.get("yardsticks", {}).items():
        print(f"on {key} ({y.get('images', 0):,} images after what is set aside):")
        for arm, r in y["arms"].items():
            for x in r["runs"]:
                lo, hi = x["ci95"]["accuracy"]
                wl = x["accuracy_without_leaked"]
                print(f"  {arm:8s} seed {x['seed']}: accuracy {x['accuracy']:.4f} (95% {lo:.4f}–{hi:.4f}), macro-F1 "
                      f"{x['macro_f1']:.4f}, without leaked {wl if wl is None else f'{wl:.4f}'}; set aside {x['set_aside']}")
            if r["mean_accuracy"] is not None:
                print(f"  {arm:8s} mean {r['mean_accuracy']:.4f}")
        for arm, d in y["differences"].items():
            base = d.get("against", "raw")
            print(f"  {arm.split('-')[0]} − {base} (seeds {d['seeds']}), full: {ab.verdict(d['full'], against=base)}")
            if d.get("without_leaked"):
                print(f"  {arm.split('-')[0]} − {base}, without leaked: {ab.verdict(d['without_leaked'], against=base)}")
        for arm, c in y.get("captured", {}).items():
            print(f"  {ab.captured_text(arm, c)}")
            if c.get("without_leaked"):
                print(f"  without leaked: {ab.captured_text(arm, c, which='without_leaked')}")
        if y.get("crowd_prior"):
            print(f"  {ab.crowd_prior_text(y['crowd_prior'])}")
            if y["crowd_prior"]["prior"].get("without_leaked"):
                print(f"  without leaked: {ab.crowd_prior_text(y['crowd_prior'], which='without_leaked')}")
    for where, r0 in [("the dataset's test split", res)] + list(res.get("yardsticks", {}).items()):
        recall = ab.recall_table(r0)
        if recall is not None:
            print(f"recall per class on {where} (mean over seeds):")
            print("  " + recall.to_string(float_format=lambda v: f"{v:.3f}").replace("\n", "\n  "))
    print("learning curves (validation accuracy per epoch, first seed of each arm):")
    for arm, r in res.get("arms", {}).items():
        if r["runs"]:
            h = r["runs"][0]["history"]
            print(f"  {arm:8s} " + " ".join(f"{e['val_accuracy']:.3f}" for e in h))
            print(f"  {arm:8s} train " + " ".join(f"{e['accuracy']:.3f}" for e in h))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--name", default="fer2013")
    ap.add_argument("--preset", default=None, help="default: a resumed or --baseline A/B's, else standard")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ab-id", default="bench-ab-standard")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--baseline", default=None, help="A/B id whose raw runs to reuse")
    ap.add_argument("--no-relabel-arm", action="store_true")
    ap.add_argument("--uncapped", action="store_true", help="no per-class cap on the label cut")
    ap.add_argument("--recipe", default=None,
                    help="recipe YAML for a new A/B (default: the data-derived default recipe), e.g. an ablation")
    ap.add_argument("--arms", default=None, help="comma-separated arms (default raw,curated,relabel)")
    ap.add_argument("--eval-on", action="append", default=[], help="extra yardstick DATASET[:SPLIT] (repeatable)")
    ap.add_argument("--budget", default=None, choices=["passes", "steps"],
                    help="same gradient steps as the raw arm for every arm (default) or same passes")
    ap.add_argument("--lr-decay", default=None, choices=["cosine"],
                    help="the preset's learning rate decays along a cosine to 0 over the run (default: the preset's own)")
    ap.add_argument("--train-arms", default=None, help="train only these arms' missing runs now, e.g. prior")
    ap.add_argument("--train-seeds", default=None,
                    help="train only these seeds' missing runs now, e.g. 0 or 0,1 (the A/B keeps all its seeds)")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    from fer_core import decisions, recipe as recipe_mod
    from fer_core.progress import TqdmProgress
    from fer_core.train import ab

    doc = ab.load_ab(args.name, args.ab_id, args.cache)
    # as the CLI's `ab`: a resumed A/B, or a new one reusing --baseline's raw runs, keeps that A/B's preset and
    # settings unless they are given here
    ref = doc or (ab.load_ab(args.name, args.baseline, args.cache) if args.baseline else None)
    preset = args.preset or (ref["preset"] if ref else "standard")
    changes = (ref or {}).get("changes") or {}
    if not args.report_only:
        sig = decisions.load_inputs(args.name, args.cache).signals
        if "label_quality" not in sig.columns:
            raise SystemExit(f"No label signals: run `python -m fer_core --cache {args.cache} labels {args.name}` first.")
        rec = None
        if doc is None and args.recipe:
            rec = recipe_mod.Recipe.load(args.recipe)
        elif doc is None:
            rec = recipe_mod.default_recipe(sig, name=f"{args.name}-default")
            if args.uncapped:
                rec = rec.with_labels(class_cap=None)
        doc = ab.run_ab(args.name, rec, list(range(args.seeds)), preset, progress=TqdmProgress(),
                        relabel_arm=False if args.no_relabel_arm else None, cache=args.cache, ab_id=args.ab_id,
                        resume=doc is not None, baseline=args.baseline,
                        arms=args.arms.split(",") if args.arms else None, eval_on=args.eval_on,
                        train_seeds=[int(x) for x in args.train_seeds.split(",")] if args.train_seeds else None,
                        train_arms=args.train_arms.split(",") if args.train_arms else None,
                        budget=args.budget or (doc.get("budget", "passes") if doc else None),
                        lr_decay=args.lr_decay or changes.get("lr_decay"),
                        epochs=changes.get("epochs"), max_train=changes.get("max_train"))
    if doc is None:
        raise SystemExit(f"No A/B '{args.ab_id}' yet.")
    report(doc)


if __name__ == "__main__":
    main()
