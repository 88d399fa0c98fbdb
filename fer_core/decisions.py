"""Glue for callers (CLI, UI, export): load a dataset's signals and pairs once, decide, write files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer_core import datasets, recipe as recipe_mod, review, splits, store
from fer_core.errors import InvalidInput


@dataclass
class Inputs:
    name: str
    signals: pd.DataFrame        # sorted by id
    pairs: recipe_mod.Pairs

    @property
    def catalog_hash(self) -> str:
        return self.signals.attrs.get("catalog_hash", "")


def load_inputs(name: str, cache=None) -> Inputs:
    """Signals (with the stored split assignment applied, if the dataset has one: :mod:`fer_core.splits`) and the
    duplicate candidate pairs (less those joining two known different recordings: :func:`distinct_recordings`)."""
    sig = store.load_signals(name, cache, require=("quality", "duplicates"))
    for c in ("id", "path", "split", "usage", "label", "label_orig", "scan_error"):
        if c in sig:  # plain object arrays: to_numpy() is then free on every decide
            sig[c] = sig[c].astype(object)
    ds = datasets.load(name, cache)
    sig = splits.apply(ds, sig)
    pairs_df = store.load_derived(ds, "duplicates", "pairs")
    status = store.family_status(name, cache)
    if status.get("embeddings", {}).get("complete"):
        emb = store.load_derived(ds, "embeddings", "pairs")
        if emb is not None and len(emb):
            pairs_df = pd.concat([pairs_df, emb], ignore_index=True)
    pairs = recipe_mod.Pairs.from_frame(pairs_df, sig["id"].to_numpy())
    rec = splits.recordings(ds, sig["id"].to_numpy())
    if rec is not None:
        pairs = pairs.subset(~distinct_recordings(pairs, rec))
    return Inputs(name, sig, pairs)


def distinct_recordings(pairs: recipe_mod.Pairs, rec: np.ndarray) -> np.ndarray:
    """Mask over ``pairs``: not pixel-identical, and from two recordings both known and different (CK+: two
    sequences; JAFFE: two photographs). Such images are never copies of one photograph, however alike: on CK+ a
    person's other expression correlates up to 0.95 with a frame (bench/bench_ckplus_dups.py)."""
    known = pd.notna(rec)
    a, b = pairs.ia, pairs.ib
    return (pairs.method != recipe_mod.METHOD_CODE["exact"]) & known[a] & known[b] & (rec[a] != rec[b])


def overrides_for(name: str, cache=None) -> pd.DataFrame:
    return review.store_for(datasets.load(name, cache)).overrides()


def recipes_dir(name: str, cache=None) -> Path:
    paths = datasets.load(name, cache).paths
    return paths.made(paths.recipes)


def run(inputs: Inputs, rec: recipe_mod.Recipe, overrides: pd.DataFrame | None = None) -> pd.DataFrame:
    return recipe_mod.decide(inputs.signals, rec, overrides, inputs.pairs)


def check_crowd(inputs: Inputs, rec: recipe_mod.Recipe, cache=None) -> None:
    """A recipe that relabels to the crowd or sets unsure votes aside needs current crowd votes: without them it
    would silently do neither, so what is trained or exported would not be what the recipe says. Refused."""
    if (rec.labels.crowd != "off" or rec.labels.crowd_unsure == "drop") and "crowd_label" not in inputs.signals:
        st = store.family_status(inputs.name, cache).get("votes", {}) if inputs.name else {}
        why = st.get("stale") or "none are stored"
        raise InvalidInput(f"The recipe uses crowd votes (labels.crowd: {rec.labels.crowd}, crowd_unsure: "
                           f"{rec.labels.crowd_unsure}), but '{inputs.name}' has no current votes ({why}).",
                           f"Link it to FER+ again (`python -m fer_core link {inputs.name} ferplus`), or set the "
                           "recipe's crowd choices off.")


SIGNAL_EXCLUDE = {"id", "path", "split", "usage", "label", "label_orig"}


def decisions_table(inputs: Inputs, dec: pd.DataFrame) -> pd.DataFrame:
    """One row per image: id, path, split, usage, label, keep, reasons, and every signal value."""
    s = inputs.signals
    out = pd.DataFrame({
        "id": s["id"], "path": s["path"], "split": s["split"], "usage": s["usage"], "label": s["label"],
        "keep": dec["keep"].to_numpy(), "reasons": recipe_mod.reasons_text(dec["reasons"]),
        "review": recipe_mod.reasons_text(dec["review"]),
        "flags": recipe_mod.reasons_text(dec["flags"]), "label_final": dec["label_final"].to_numpy(),
        "override": dec["override"].to_numpy(), "dup_group": dec["group"].to_numpy(),
        "dup_representative": dec["representative"].to_numpy(), "eval_leaked": dec["eval_leaked"].to_numpy(),
        "auto_relabel": dec["auto_relabel"].to_numpy(), "label_capped": dec["label_capped"].to_numpy(),
    })
    if "class_capped" in dec:  # spared by the recipe's per-class cap (left for review)
        out["class_capped"] = dec["class_capped"].to_numpy()
    for c in s.columns:
        if c not in SIGNAL_EXCLUDE and c not in out:
            v = s[c]
            if v.dtype == np.uint64:  # hashes: hex strings read better and survive CSV
                v = v.map(lambda x: f"{int(x):016x}")
            out[c] = v.to_numpy()
    return out


def write_decisions(table: pd.DataFrame, path: str | Path) -> Path:
    from fer_core.fsutil import atomic_path, atomic_write_text

    path = Path(path)
    if path.suffix == ".parquet":
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
    elif path.suffix == ".csv":
        atomic_write_text(path, table.to_csv(index=False))
    else:
        raise InvalidInput(f"Unknown decisions format '{path.suffix}'.", "Use .csv or .parquet.")
    return path
