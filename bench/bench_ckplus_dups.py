"""Duplicate groups on the real CK+ copy (issue 18): do they mean "frames of one sequence" and nothing else?

    python bench/bench_ckplus_dups.py [--cache DIR] [--fer-cache DIR]

Imports and scans ``../shared/datasets/ckplus/archive.zip`` (into a temporary cache unless --cache names one
that holds it as ``ckplus``), decides with the data-derived default recipe and prints, for three grouping rules:

- ``components``: connected components of the pairs the recipe accepts (the rule the issue measured);
- ``complete``: complete linkage around the kept copy, chains confirmed on the pixels (before this change);
- ``pixels``: that, plus every hash pair in a group confirmed on the pixels (``grouping.group_pairs``);
- ``now``: that, plus no pair between two known different recordings (CK+ sequences:
  ``decisions.distinct_recordings``, applied when the inputs are loaded),

the images rejected, duplicate groups, groups spanning two subjects, groups spanning two sequences with
different labels, sequences whose three frames form one group, and the candidate pairs the recipe accepts by
kind (same sequence / same person, other expression / other person) with their pixel correlation.
--fer-cache DIR: a cache holding a scanned ``fer2013`` (a copy: deciding may touch its review database); the
same figures of the default recipe on it (leaks, duplicates, groups) for the three rules.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date

import numpy as np
import pandas as pd

from _common import ROOT, machine

CK_ZIP = (ROOT.parent / "shared" / "datasets" / "ckplus" / "archive.zip").resolve()


def _components_groups(n, pairs, sel):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    comp = connected_components(coo_matrix((np.ones(int(sel.sum()), np.int8), (pairs.ia[sel], pairs.ib[sel])),
                                           shape=(n, n)), directed=False)[1]
    size = np.bincount(comp, minlength=n)[comp]
    return np.where(size > 1, comp, -1)


def load_inputs(name: str, cache, recordings: bool = True):
    """The decide inputs, with or without the recordings rule (``decisions.distinct_recordings``)."""
    from fer_core import decisions

    saved = decisions.distinct_recordings
    try:
        if not recordings:
            decisions.distinct_recordings = lambda pairs, rec: np.zeros(len(pairs.ia), bool)
        return decisions.load_inputs(name, cache)
    finally:
        decisions.distinct_recordings = saved


def decide_with(rule: str, inputs, rec):
    """Decisions of ``rec`` under a grouping rule (see the module docstring)."""
    import importlib

    from fer_core import decisions
    from fer_core.recipe import grouping

    decide_mod = importlib.import_module("fer_core.recipe.decide")   # (the package re-exports the function)

    saved_gp, saved_dg = grouping.group_pairs, decide_mod.duplicate_groups
    try:
        if rule in ("components", "complete"):
            grouping.group_pairs = lambda pairs, sel, cls: sel
        if rule == "components":
            def comps(n, pairs, dup, priority=None, sel=None, cls=None):
                return _components_groups(n, pairs, grouping.accepted_pairs(pairs, dup))
            decide_mod.duplicate_groups = comps
        return decisions.run(inputs, rec)
    finally:
        grouping.group_pairs, decide_mod.duplicate_groups = saved_gp, saved_dg


def ck_figures(inputs, dec) -> dict:
    from fer_core import recipe as recipe_mod

    s = inputs.signals
    m = s["path"].str.extract(r"S(\d+)_(\d+)_(\d+)")
    subj, seq, lab = m[0].to_numpy(), (m[0] + "_" + m[1]).to_numpy(), s["label"].to_numpy()
    g = dec["group"].to_numpy()
    G = pd.DataFrame({"g": g, "subj": subj, "seq": seq, "lab": lab})[g >= 0]
    a = G.groupby("g").agg(ns=("subj", "nunique"), nq=("seq", "nunique"), nl=("lab", "nunique"))
    sg = G.groupby("seq").agg(ng=("g", "nunique"), k=("g", "size"))
    keep = dec["keep"].to_numpy()
    summ = recipe_mod.summarize(s, dec)
    per_class = {k: v["rejected"] / (v["kept"] + v["rejected"]) for k, v in summ["by_label"].items()}
    return {"rejected": int((~keep).sum()), "rejected_share": float((~keep).mean()),
            "duplicate": int(recipe_mod.has_reason(dec["reasons"], "duplicate").sum()),
            "groups": len(a), "two_subjects": int((a.ns > 1).sum()),
            "two_sequences_other_label": int(((a.nq > 1) & (a.nl > 1)).sum()),
            "sequences_one_group": int(((sg.ng == 1) & (sg.k == 3)).sum()), "sequences": int(len(set(seq))),
            "conflict_review": int(summ.get("to_review", {}).get("conflict", 0)),
            "worst_class": max(per_class.items(), key=lambda kv: kv[1]),
            "needs_choice": len(summ.get("needs_choice", []))}


def pair_table(inputs, rec) -> pd.DataFrame:
    from fer_core.recipe import grouping

    s, p = inputs.signals, inputs.pairs
    m = s["path"].str.extract(r"S(\d+)_(\d+)_(\d+)")
    subj, seq = m[0].to_numpy(), (m[0] + "_" + m[1]).to_numpy()
    acc = grouping.accepted_pairs(p, rec.duplicates)
    kind = np.where(seq[p.ia] == seq[p.ib], "same sequence",
                    np.where(subj[p.ia] == subj[p.ib], "same person, other expression", "other people"))
    df = pd.DataFrame({"kind": kind, "method": [grouping.METHOD_NAME[x] for x in p.method], "bits": p.distance,
                       "pixel_corr": p.pixel_corr})[acc]
    return df.groupby("kind").agg(pairs=("bits", "size"), bits_median=("bits", "median"),
                                  corr_p5=("pixel_corr", lambda v: np.nanpercentile(v, 5)),
                                  corr_median=("pixel_corr", "median"), corr_max=("pixel_corr", "max"))


def fer_figures(inputs, dec) -> dict:
    from fer_core import recipe as recipe_mod

    s = recipe_mod.summarize(inputs.signals, dec)
    return {"rejected": s["rejected"], "duplicate": s["by_reason"].get("duplicate", 0),
            "leak": s["by_reason"].get("leak", 0), "groups": s["duplicate_groups"],
            "eval_leaked_val": s["eval_leaked"]["val"], "eval_leaked_test": s["eval_leaked"]["test"],
            "conflict_review": s.get("to_review", {}).get("conflict", 0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None)
    ap.add_argument("--fer-cache", default=None)
    args = ap.parse_args()
    print(f"# {date.today()} · {machine()}", flush=True)
    from fer_core import datasets, store
    from fer_core.workspace import Workspace

    cache = args.cache or tempfile.mkdtemp(prefix="ckbench-")
    if not datasets.exists("ckplus", cache):
        if not CK_ZIP.exists():
            raise SystemExit(f"CK+ not found at {CK_ZIP}")
        datasets.import_dataset(CK_ZIP, "ckplus", cache=cache)
    t = time.perf_counter()
    store.scan("ckplus", cache=cache)
    ws = Workspace("ckplus", cache)
    inputs = load_inputs("ckplus", cache)
    raw = load_inputs("ckplus", cache, recordings=False)
    rec = ws.default_recipe(inputs=inputs)
    print(f"CK+: {len(inputs.signals)} images, scanned in {time.perf_counter() - t:.1f} s; pixel threshold "
          f"{inputs.pairs.pixel_same():.3f}; recipe near_threshold {rec.duplicates.near_threshold} bits")
    print("\nCandidate pairs the default recipe accepts by hash (kind from the file names):")
    print(pair_table(raw, rec).round(3).to_string())
    rows = {}
    for rule in ("components", "complete", "pixels", "now"):
        inp = inputs if rule == "now" else raw
        decide_with(rule, inp, rec)                     # warm (the first decide caches codes on the frame)
        t = time.perf_counter()
        dec = decide_with(rule, inp, rec)
        rows[rule] = ck_figures(inp, dec) | {"decide_ms": round(1000 * (time.perf_counter() - t))}
    print("\nCK+ default recipe, per grouping rule:")
    print(pd.DataFrame(rows).to_string())
    if args.fer_cache:
        fw = Workspace("fer2013", args.fer_cache)
        fin = fw.inputs()
        frec = fw.default_recipe(inputs=fin)
        print(f"\nFER2013 default recipe (pixel threshold {fin.pairs.pixel_same():.3f}; no recordings known, so "
              "'now' = 'pixels'), per grouping rule:")
        rows = {}
        for rule in ("components", "complete", "now"):
            decide_with(rule, fin, frec)
            t = time.perf_counter()
            rows[rule] = fer_figures(fin, decide_with(rule, fin, frec)) | {
                "decide_ms": round(1000 * (time.perf_counter() - t))}
        print(pd.DataFrame(rows).to_string())


if __name__ == "__main__":
    main()
