"""Does a trained model learn FER2013's wrong labels? (issue 17: why curation does not beat raw at this budget)

    python bench/bench_noise_fit.py --cache DIR [--name fer2013] [--ab-id crowd-ab] [--arm raw] [--runs ID,ID]

Label cleaning can only help a model that fits the labels it is given, wrong ones included. For each finished
run (default: the raw arm of the A/B), the saved model predicts its own training images (no augmentation, no
test-time flip) and the script splits them by what the crowd (FER+ through the link, majority of ten votes; ties,
unknown and not-a-face left out) says of the given label:

- *agreed*: the given label is the crowd's majority — how often the model predicts it (how well it fits);
- *disputed*: the crowd's majority is another class — how often the model predicts the given (wrong) label
  (memorised noise) and how often the crowd's (what it learned despite the label).

The same on the validation and test images that have no copy in training (*held out*: never trained on) says
what the model does with a disputed label it never saw; *memorised* = given-label rate on disputed training
images − the same rate held out. A model that memorised little has little for label cleaning to undo. Needs no
training (about a minute of CPU per run).
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import machine


def fit_to_labels(name: str, run_id: str, cache: str) -> dict:
    import keras
    import pandas as pd

    from fer_core import datasets, decisions, recipe as recipe_mod, splits
    from fer_core.train import data as data_mod, runs

    info = runs.run_info(name, run_id, cache)
    classes = info["config"]["classes"]
    ds = datasets.load(name, cache)
    cat = splits.apply(ds, ds.catalog).set_index("id")
    inputs = decisions.load_inputs(name, cache)
    sig = inputs.signals.set_index("id")
    if "crowd_label" not in sig.columns:
        raise SystemExit(f"{name} has no crowd votes: `python -m fer_core --cache {cache} link {name} ferplus` first.")
    ids, px = data_mod.pixels(ds)
    split = cat.loc[ids, "split"].to_numpy()
    train = split == "train"
    dec = decisions.run(inputs, recipe_mod.default_recipe(inputs.signals), None).set_index("id")
    held = np.isin(split, ("val", "test")) & ~dec["eval_leaked"].reindex(ids).fillna(False).to_numpy(bool)
    given = cat.loc[ids, "label"].to_numpy()
    crowd = sig["crowd_label"].reindex(ids).to_numpy()
    voted = pd.Series(crowd).isin(classes).to_numpy()    # a clear majority on a class the model knows
    model = keras.models.load_model(info["dir"] / "model.keras")
    out = {"run_id": run_id, "seed": info["config"].get("seed"), "arm": info["config"].get("arm")}
    for where, sel in (("train", train), ("held", held)):
        pred = np.asarray(classes)[runs.predict(model, px[sel], tta=False).argmax(1)]
        g, c, v = given[sel], crowd[sel], voted[sel]
        agreed, disputed = v & (g == c), v & (g != c)
        out[where] = {"images": int(sel.sum()), "accuracy_given": float((pred == g).mean()),
                      "agreed": int(agreed.sum()), "fit_agreed": float((pred[agreed] == g[agreed]).mean()),
                      "disputed": int(disputed.sum()), "given_on_disputed": float((pred[disputed] == g[disputed]).mean()),
                      "crowd_on_disputed": float((pred[disputed] == c[disputed]).mean())}
    return {**out, "epochs": len(info["history"] or []),
            "last_train_accuracy": (info["history"] or [{}])[-1].get("accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--name", default="fer2013")
    ap.add_argument("--ab-id", default="crowd-ab")
    ap.add_argument("--arm", default="raw")
    ap.add_argument("--runs", default=None, help="comma-separated run ids (default: the A/B arm's finished runs)")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    from fer_core.train import ab

    if args.runs:
        rids = args.runs.split(",")
    else:
        doc = ab.load_ab(args.name, args.ab_id, args.cache)
        if doc is None:
            raise SystemExit(f"No A/B '{args.ab_id}' of {args.name} in {args.cache}.")
        rids = doc["runs"].get(args.arm, [])
    for rid in rids:
        r = fit_to_labels(args.name, rid, args.cache)
        t, h = r["train"], r["held"]
        print(f"{r['arm']} seed {r['seed']} ({rid}, {r['epochs']} epochs; last epoch's augmented training accuracy "
              f"{r['last_train_accuracy'] or float('nan'):.1%})", flush=True)
        for key, x in (("training", t), ("held out", h)):
            print(f"  {key:8s} {x['images']:6,} images: predicted as labelled {x['accuracy_given']:.1%}; crowd agrees "
                  f"({x['agreed']:,}): as labelled {x['fit_agreed']:.1%}; crowd disputes ({x['disputed']:,}): as "
                  f"labelled {x['given_on_disputed']:.1%}, as the crowd's majority {x['crowd_on_disputed']:.1%}")
        print(f"  memorised (disputed, as labelled: training − held out): "
              f"{(t['given_on_disputed'] - h['given_on_disputed']) * 100:+.1f} points; fit to agreed labels: "
              f"{(t['fit_agreed'] - h['fit_agreed']) * 100:+.1f} points", flush=True)


if __name__ == "__main__":
    main()
