"""Evaluate a run on any imported dataset's test split (a yardstick): FER2013 runs on FER+ Test, and back.

The figures are the run's own (accuracy, macro-F1, 95% bootstrap intervals, per-class recall, confusion matrix)
plus the leakage-aware variant: a test image that shows the same picture as a training image of the run's
dataset (through a link, :mod:`fer_core.links`), or as a test image there that has a training copy, is set
aside. What is set aside and why is counted, never hidden:

- ``unseen_class``: test images whose label the model was never trained on (FER+ contempt for a FER2013 model):
  reported per label, never mapped to another class;
- ``crowd_unsure``: where the test labels are crowd votes (the dataset's own votes, FER+), images whose votes
  give no single expression (a tie, unknown, not a face).

Stored beside the run (``runs/<id>/yardsticks/<dataset>-<split>.json`` + ``.npz`` with ids, labels, leakage flags
and probabilities), so an A/B can pair arms on it and a saved model is evaluated again without retraining.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer_core import datasets
from fer_core.errors import DatasetError, InvalidInput
from fer_core.fsutil import atomic_path, atomic_write_json
from fer_core.progress import CancelToken, ProgressFn, emit
from fer_core.crowd import crowd_unsure_ids

SPLITS = ("test", "val")      # a training split is no yardstick


@dataclass(frozen=True)
class Target:
    dataset: str
    split: str = "test"

    @property
    def key(self) -> str:
        return f"{self.dataset}:{self.split}"

    @property
    def file_stem(self) -> str:
        return f"{self.dataset}-{self.split}"


def parse_target(text: str) -> Target:
    """``DATASET[:SPLIT]`` (split default test)."""
    name, _, split = str(text).strip().partition(":")
    split = split or "test"
    if split not in SPLITS:
        raise InvalidInput(f"'{text}': unknown split '{split}'.", "Use DATASET, DATASET:test or DATASET:val.")
    datasets.check_name(name)
    return Target(name, split)


def _leakage(target: Target, ids: np.ndarray, run_dataset: str, cache=None) -> tuple[np.ndarray | None, str]:
    if target.dataset == run_dataset:
        from fer_core.train.data import test_leakage

        if target.split != "test":
            return None, "leakage is checked for the test split only"
        leak = test_leakage(run_dataset, cache)
        if leak is None:
            return None, f"{run_dataset}'s duplicates are not scanned"
        te = np.sort(_split_ids(run_dataset, "test", cache))
        return np.isin(ids, te[leak]), "copies within the dataset (the default recipe's duplicate settings)"
    from fer_core import links

    st = links.status(target.dataset, run_dataset, cache)
    if st["state"] != "ok":
        why = "they are not linked" if st["state"] == "missing" else f"their link is stale ({st['why']})"
        return None, (f"unknown: {why}; link them (`python -m fer_core link {target.dataset} {run_dataset}`) to "
                      "set aside the test images the model may have seen")
    return links.leaked_through(target.dataset, ids, run_dataset, cache), f"through the link to {run_dataset}"


def _catalog(name: str, cache=None) -> pd.DataFrame:
    """The catalog with the split a person assigned (fer_core.splits), where the dataset has no split of its own."""
    from fer_core import splits

    ds = datasets.load(name, cache)
    return splits.apply(ds, ds.catalog)


def _split_ids(name: str, split: str, cache=None) -> np.ndarray:
    cat = _catalog(name, cache)
    return cat.loc[cat["split"] == split, "id"].to_numpy()


def stamp(target: Target, run_dataset: str, cache=None) -> dict:
    """What a stored evaluation depends on besides the model: the target's import (and split assignment) and,
    for another dataset, the link's build. A stored evaluation with another stamp is stale (re-evaluated)."""
    from fer_core import links, splits

    ds = datasets.load(target.dataset, cache)
    assigned = splits.load(ds)
    out = {"catalog_hash": ds.meta.get("catalog_hash"),
           "split_assignment": (assigned or {}).get("created") if assigned else None}
    if target.dataset != run_dataset:
        st = links.status(target.dataset, run_dataset, cache)
        out["link"] = st.get("created") if st["state"] == "ok" else st["state"]
    return out


def test_set(target: Target, classes: list[str], run_dataset: str, cache=None) -> dict:
    """ids, y (class index), leaked flags and what was set aside, for ``target`` judged against ``classes``."""
    cat = _catalog(target.dataset, cache)
    sel = cat[cat["split"] == target.split].sort_values("id")
    if sel.empty:
        raise DatasetError(f"'{target.dataset}' has no {target.split} split.",
                           "Pick a dataset with that split (or give DATASET:val).")
    unsure = crowd_unsure_ids(target.dataset, cache)
    is_unsure = sel["id"].isin(unsure).to_numpy()
    unseen = ~sel["label"].isin(classes).to_numpy() & ~is_unsure
    if (~is_unsure & ~unseen).sum() == 0:
        raise InvalidInput(f"None of {target.key}'s labels ({', '.join(sorted(set(sel['label'])))}) is a class the "
                           f"model knows ({', '.join(classes)}).", "Evaluate it on a dataset with the same classes.")
    keep = sel[~is_unsure & ~unseen]
    ids = keep["id"].to_numpy()
    idx = {c: i for i, c in enumerate(classes)}
    y = np.array([idx[lab] for lab in keep["label"]], np.int64)
    leaked, how = _leakage(target, ids, run_dataset, cache)
    return {"ids": ids, "y": y, "leaked": leaked, "leakage": how, "images": int(len(sel)),
            "set_aside": {"crowd_unsure": int(is_unsure.sum()),
                          "unseen_class": {str(k): int(v) for k, v in
                                           sel.loc[unseen, "label"].value_counts().sort_index().items()}}}


def yardstick_dir(run_dir: Path) -> Path:
    d = Path(run_dir) / "yardsticks"
    d.mkdir(parents=True, exist_ok=True)
    return d


def evaluate_run(name: str, run_id: str, target: Target | str, cache=None, n_boot: int = 1000,
                 model=None, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> dict:
    """Evaluate finished run ``run_id`` of dataset ``name`` on ``target``; stores and returns the figures."""
    from fer_core.train import runs as runner
    from fer_core.train.data import pixels
    from fer_core.train.evaluate import evaluate

    target = parse_target(target) if isinstance(target, str) else target
    info = runner.run_info(name, run_id, cache)
    if model is None and info["model"] is None:
        if info["status"].get("carried"):
            raise InvalidInput(f"Run {run_id} of {name} was carried from another machine without its weights "
                               "(its figures only), so it cannot be evaluated on a new yardstick.",
                               "Train it again here (a resumed A/B does so when its run is removed), or evaluate "
                               "it where it was trained.")
        raise InvalidInput(f"Run {run_id} of {name} has no finished model to evaluate.",
                           "Pick a run whose state is done.")
    cfg = info["config"]
    classes = cfg["classes"]
    ts = test_set(target, classes, name, cache)
    emit(progress, "evaluate", 0, 1, "yardsticks", message=target.key)
    ids_all, px = pixels(datasets.load(target.dataset, cache), 48, progress, cancel)
    x = px[np.searchsorted(ids_all, ts["ids"])]
    if model is None:
        import keras

        model = keras.models.load_model(info["model"], compile=False)
    probs = runner.predict(model, x, cfg.get("preset", {}).get("tta", True))
    m = evaluate(ts["y"], probs, classes, ts["leaked"], n_boot=n_boot, seed=int(cfg.get("seed", 0)))
    m.update({"yardstick": target.key, "run_id": run_id, "dataset": name, "images": ts["images"],
              "set_aside": ts["set_aside"], "leakage": ts["leakage"], "stamp": stamp(target, name, cache),
              "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    d = yardstick_dir(info["dir"])
    with atomic_path(d / f"{target.file_stem}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, ids=ts["ids"].astype(str), y=ts["y"], probs=probs,
                     leaked=ts["leaked"] if ts["leaked"] is not None else np.zeros(0, bool))
    atomic_write_json(d / f"{target.file_stem}.json", m)
    emit(progress, "evaluate", 1, 1, "yardsticks", message=target.key)
    return m


def current(run_dir: Path, target: Target | str, run_dataset: str, cache=None) -> bool:
    """A stored evaluation exists and was made on the target as it is now (same import, split, link)."""
    target = parse_target(target) if isinstance(target, str) else target
    js = Path(run_dir) / "yardsticks" / f"{target.file_stem}.json"
    try:
        return json.loads(js.read_text()).get("stamp") == stamp(target, run_dataset, cache)
    except (OSError, ValueError, DatasetError):
        return False


def load(run_dir: Path, target: Target | str) -> tuple[dict, dict] | None:
    """(figures, arrays) of a stored evaluation, or None."""
    target = parse_target(target) if isinstance(target, str) else target
    d = Path(run_dir) / "yardsticks"
    js, npz = d / f"{target.file_stem}.json", d / f"{target.file_stem}.npz"
    if not (js.exists() and npz.exists()):
        return None
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if arrays["leaked"].size == 0:
        arrays["leaked"] = None
    return json.loads(js.read_text()), arrays


def find_run(run_id: str, cache=None) -> str:
    """The dataset a run id belongs to."""
    from fer_core.train import runs as runner

    for name in datasets.list_datasets(cache):
        if (runner.runs_root(name, cache) / run_id).is_dir():
            return name
    raise InvalidInput(f"No run '{run_id}' in any imported dataset.", "List runs with `python -m fer_core runs NAME`.")
