"""Issue 18's A/B of adding data: FER2013 alone vs a collection of FER2013 + other datasets, same recipe policy.

    python bench/bench_adding_data.py --cache DIR --collection fer-ck-expw --ab-id crowd-ab \
        [--seeds 0,1,2] [--eval-on fer2013:test --eval-on ferplus:test] [--report-only]

The FER2013-alone arm is the ``curated`` arm of an existing FER2013 A/B (``--ab-id``: its default recipe, standard
preset, seeds 0..n): the collection's members are each decided by their own data-derived default recipe, so the
collection's FER2013 part is exactly that arm's training set (checked: same recipe fingerprint and kept count)
and the only difference is the added members' images. The collection is trained as it was built (no second
recipe on top), with the same preset and seeds, and both arms are judged on the same yardsticks: FER2013's
PrivateTest (``fer2013:test``) and FER+ Test (``ferplus:test``, crowd majority). Paired differences per yardstick
(per-image correctness, the seeds both arms have), on the full test set and without every test image either arm
may have seen in training (the union of both arms' leakage flags), with per-class recall. Resumable: finished
collection runs (run ids ``adding-s<seed>``) are kept; a killed run continues from its last finished epoch.

Setup (once): import and scan the members, split the split-less ones, create the collection, link it to FER+ so
that FER+ Test has a leakage-aware figure for it:

    python -m fer_core --cache DIR import ../shared/datasets/ckplus/archive.zip --name ckplus   # (and expw)
    python -m fer_core --cache DIR scan ckplus; python -m fer_core --cache DIR split ckplus --by subject
    python -m fer_core --cache DIR scan expw --signals quality,duplicates,faces,embeddings
    python -m fer_core --cache DIR split expw --by identity
    python -m fer_core --cache DIR collection create fer-ck-expw --members fer2013,ckplus,expw --contempt drop
    python -m fer_core --cache DIR link ferplus fer-ck-expw
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _common import machine


def _arrays(name: str, rid: str, key: str, cache: str):
    from fer_core.train import runs, yardstick

    rdir = runs.run_info(name, rid, cache)["dir"]
    if not yardstick.current(rdir, key, name, cache):
        yardstick.evaluate_run(name, rid, key, cache)
    return yardstick.load(rdir, key)


def compare(base: tuple[str, dict[int, str]], new: tuple[str, dict[int, str]], key: str, cache: str) -> dict:
    """Per-seed accuracies of both arms on yardstick ``key`` and the paired difference new − base."""
    from fer_core.train.evaluate import paired_difference

    out = {"yardstick": key, "arms": {}}
    got = {}
    for arm, (name, rids) in (("fer2013", base), ("collection", new)):
        rows = {}
        for seed, rid in sorted(rids.items()):
            m, arr = _arrays(name, rid, key, cache)
            rows[seed] = (m, arr)
        got[arm] = rows
        out["arms"][arm] = [{"seed": s, "run_id": rids[s], "accuracy": m["test"]["accuracy"],
                             "ci95": m["test"]["ci95"]["accuracy"], "macro_f1": m["test"]["macro_f1"],
                             "without_leaked": (m.get("test_without_leaked") or {}).get("accuracy"),
                             "set_aside": m.get("set_aside"), "leakage": m.get("leakage"),
                             "per_class_recall": m["test"].get("per_class_recall")} for s, (m, _) in rows.items()]
    seeds = sorted(set(got["fer2013"]) & set(got["collection"]))
    if not seeds:
        return out
    ref = got["fer2013"][seeds[0]][1]
    for arm in got:
        for s in seeds:
            a = got[arm][s][1]
            if list(a["ids"]) != list(ref["ids"]) or not np.array_equal(a["y"], ref["y"]):
                raise SystemExit(f"{arm} seed {s} was evaluated on other {key} images or labels: re-evaluate.")
    y = ref["y"]
    ca = np.stack([got["fer2013"][s][1]["probs"].argmax(1) == y for s in seeds])
    cb = np.stack([got["collection"][s][1]["probs"].argmax(1) == y for s in seeds])
    leaked = np.zeros(len(y), bool)
    unknown = []
    for arm in got:
        for s in seeds:
            lk = got[arm][s][1]["leaked"]
            if lk is None:
                unknown.append(f"{arm} seed {s}")
            else:
                leaked |= lk
    out["seeds"] = seeds
    out["images"] = int(len(y))
    out["full"] = paired_difference(ca, cb)
    if not unknown:
        out["without_leaked"] = paired_difference(ca[:, ~leaked], cb[:, ~leaked])
        out["leaked_either"] = int(leaked.sum())
    else:
        out["leakage_unknown_for"] = unknown
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--collection", default="fer-ck-expw")
    ap.add_argument("--base", default="fer2013", help="the dataset whose A/B gives the alone arm")
    ap.add_argument("--ab-id", default="crowd-ab", help="the base dataset's A/B (its curated arm)")
    ap.add_argument("--base-arm", default="curated")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--eval-on", action="append", default=None)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    from fer_core import collections, datasets
    from fer_core.progress import TqdmProgress
    from fer_core.train import ab, runs, runner

    cache = args.cache
    eval_on = args.eval_on or ["fer2013:test", "ferplus:test"]
    seeds = [int(s) for s in args.seeds.split(",")]
    st = collections.status(args.collection, cache)
    if st.get("stale"):
        raise SystemExit(collections.format_status(st))
    doc = ab.load_ab(args.base, args.ab_id, cache)
    if doc is None:
        raise SystemExit(f"No A/B '{args.ab_id}' of {args.base} in {cache}.")
    base_runs = {}
    for rid in doc["runs"].get(args.base_arm, []):
        info = runs.run_info(args.base, rid, cache)
        if info["status"].get("state") == "done" and info["metrics"]:
            base_runs[int(info["config"]["seed"])] = rid
    # the collection's base member must be decided exactly as the base arm was
    rec = json.loads(collections.record_path(args.collection, cache).read_text())
    member = next(m for m in rec["members"] if m["dataset"] == args.base)
    fp = doc["recipe"] and base_runs and runs.run_info(args.base, next(iter(base_runs.values())), cache)["config"][
        "source"].get("decisions", {})
    print(f"{args.base} arm: A/B {args.ab_id} {args.base_arm} runs of seeds {sorted(base_runs)}; "
          f"decisions {fp.get('recipe_fingerprint') if fp else '?'} kept {fp.get('kept') if fp else '?'} — collection "
          f"member {member.get('recipe_fingerprint', '?')} kept {member.get('kept_by_recipe', '?')}")
    coll_runs = {}
    for seed in seeds:
        rid = f"adding-s{seed}"
        info = runs.run_info(args.collection, rid, cache) if (runs.runs_root(args.collection, cache) / rid).exists() \
            else None
        if info and info["status"].get("state") == "done" and info["metrics"]:
            coll_runs[seed] = rid
            continue
        if args.report_only:
            continue
        resume = info is not None and runner.load_checkpoint(info["dir"] / "checkpoint") is not None
        if info is not None and not resume:
            runs.delete_run(args.collection, rid, cache)
        t0 = time.time()
        m = runner.train(args.collection, "raw", preset=args.preset, seed=seed, run_id=rid,
                         progress=TqdmProgress(), cache=cache, eval_on=eval_on, resume=resume)
        print(f"\ncollection seed {seed}: {m['train_images']:,} training images, {m['epochs_run']} epochs, "
              f"{(time.time() - t0) / 60:.1f} min", flush=True)
        coll_runs[seed] = rid
    result = {"collection": args.collection, "members": [m["dataset"] for m in rec["members"]],
              "base": f"{args.base} {args.ab_id} {args.base_arm}", "preset": args.preset, "yardsticks": {}}
    for key in eval_on:
        r = compare((args.base, base_runs), (args.collection, coll_runs), key, cache)
        result["yardsticks"][key] = r
        print(f"on {key}:")
        for arm, rows in r["arms"].items():
            for x in rows:
                lo, hi = x["ci95"]
                wl = x["without_leaked"]
                print(f"  {arm:10s} seed {x['seed']}: {x['accuracy']:.4f} (95% {lo:.4f}–{hi:.4f}), macro-F1 "
                      f"{x['macro_f1']:.4f}, without leaked {wl if wl is None else f'{wl:.4f}'}")
        if "full" in r:
            print(f"  collection − {args.base} alone (seeds {r['seeds']}, {r['images']:,} images): "
                  + ab.verdict(r["full"], args.preset, against=f"{args.base} alone"))
            if "without_leaked" in r:
                print(f"  … without the {r['leaked_either']:,} test images either arm may have seen: "
                      + ab.verdict(r["without_leaked"], args.preset, against=f"{args.base} alone"))
            else:
                print(f"  … leakage unknown for {', '.join(r['leakage_unknown_for'])} (link the datasets)")
            pcr = {arm: {} for arm in r["arms"]}
            for arm, rows in r["arms"].items():
                for x in rows:
                    if x["seed"] in r["seeds"]:
                        for c, v in (x["per_class_recall"] or {}).items():
                            pcr[arm].setdefault(c, []).append(v)
            print("  per-class recall (mean over the paired seeds): "
                  + ", ".join(f"{c} {np.mean(pcr['fer2013'][c]):.3f}→{np.mean(pcr['collection'][c]):.3f}"
                              for c in pcr["fer2013"] if c in pcr["collection"]))
    out = datasets.load(args.collection, cache).paths.home / "adding-data.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
