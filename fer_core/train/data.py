"""Training data: decoded pixel arrays (cached per dataset and size) and the train/val/test sets of a run.

Sources of a run's *training* and *validation* images:

- ``raw``: every image of the dataset with its original label;
- a recipe (+ the person's overrides): the kept images, under their final labels (accepted relabels);
- an export folder: exactly the files in it (its manifest names the source dataset).

The *test* set is always the dataset's official test split, untouched: every test image, original label,
whatever the recipe says (the recipe's scope never reaches it here). Each test image also carries
``leaked``: it has a copy in the training split (found with the default recipe's duplicate settings), so the
report can give the leakage-aware figure next to the full one.
"""

from __future__ import annotations

import json
import os
from multiprocessing.pool import ThreadPool
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_core import datasets, locks
from fer_core.errors import DatasetError, InvalidInput
from fer_core.fsutil import atomic_path
from fer_core.progress import CancelToken, ProgressFn, check_cancel, emit
from fer_core.sources.labels import CANONICAL


def _load_gray(args) -> np.ndarray:
    paths, size = args
    out = np.zeros((len(paths), size, size), np.uint8)
    for i, p in enumerate(paths):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        if img.shape != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if min(img.shape) >= size else cv2.INTER_LINEAR)
        out[i] = img
    return out


def load_images(paths: list, size: int, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                workers: int | None = None) -> np.ndarray:
    """Decode images to ``(n, size, size)`` uint8 grayscale, in parallel, in order.

    Threads, not a fork pool: OpenCV releases the GIL while it decodes and resizes (48,000 against 29,000 FER2013
    images/s with 2 workers, measured 2026-11-30), and a fork of a process whose TensorFlow threads hold locks can
    leave the child waiting forever (seen: an export's training data decoded after a run in the same process)."""
    chunks = [paths[i:i + 2048] for i in range(0, len(paths), 2048)]
    out = []
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    emit(progress, "decode", 0, len(paths), "images")
    done = 0
    pool = ThreadPool(workers) if workers > 1 else None
    try:
        it = pool.imap(_load_gray, [(c, size) for c in chunks]) if pool else map(_load_gray, [(c, size) for c in chunks])
        for arr in it:
            check_cancel(cancel)
            out.append(arr)
            done += len(arr)
            emit(progress, "decode", done, len(paths), "images")
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return np.concatenate(out) if out else np.zeros((0, size, size), np.uint8)


def pixels(ds: datasets.Dataset, size: int = 48, progress: ProgressFn | None = None,
           cancel: CancelToken | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids sorted, pixels) of every catalog image at ``size``; decoded once and cached beside the signals."""
    cat = ds.catalog.sort_values("id")
    d = ds.paths.made(ds.paths.work)
    path = d / f"pixels-{size}-{ds.meta['catalog_hash'][:16]}.npy"
    ids = cat["id"].to_numpy()
    if path.exists():
        arr = np.load(path, mmap_mode="r")
        if arr.shape[0] == len(ids):
            return ids, np.asarray(arr)
    arr = load_images([ds.image_path(p) for p in cat["path"]], size, progress, cancel)
    for old in d.glob(f"pixels-{size}-*.npy"):
        old.unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        np.save(tmp, arr)
    return ids, arr


@dataclass
class Split:
    ids: np.ndarray
    x: np.ndarray          # (n, size, size) uint8
    y: np.ndarray          # class index
    labels: np.ndarray     # label names (final labels for train/val)
    soft: np.ndarray | None = None   # (n, classes) target distribution (crowd votes), when training on soft labels

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class TrainData:
    dataset: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    test_leaked: np.ndarray | None        # bool per test image; None when duplicates were not scanned
    source: dict = field(default_factory=dict)

    def describe(self) -> str:
        leak = "" if self.test_leaked is None else f", {int(self.test_leaked.sum()):,} of them with a training copy"
        return (f"{len(self.train):,} training, {len(self.val):,} validation, {len(self.test):,} test images"
                f"{leak}; classes: {', '.join(self.classes)}")


def class_order(labels) -> list[str]:
    present = set(labels)
    return [c for c in CANONICAL if c in present] + sorted(present - set(CANONICAL))


def test_leakage(name: str, cache=None) -> np.ndarray | None:
    """Per test image (sorted by id): has a copy in train, by the default recipe's duplicate settings."""
    from fer_core import decisions, recipe as recipe_mod, store

    st = store.family_status(name, cache)
    if not (st["quality"]["complete"] and st["duplicates"]["complete"]):
        return None
    inputs = decisions.load_inputs(name, cache)
    dec = decisions.run(inputs, recipe_mod.default_recipe(inputs.signals), None)
    test = inputs.signals["split"].to_numpy() == "test"
    return dec["eval_leaked"].to_numpy()[test]


def _split_from(ids_all, px_all, sel_ids, labels, classes) -> Split:
    pos = np.searchsorted(ids_all, sel_ids)
    idx = {c: i for i, c in enumerate(classes)}
    return Split(np.asarray(sel_ids), px_all[pos], np.array([idx[l] for l in labels], np.int64), np.asarray(labels))


def soft_targets(name: str, ids: np.ndarray, y: np.ndarray, classes: list[str], cache=None) -> tuple[np.ndarray, dict]:
    """The crowd's vote distribution over ``classes`` for each image (votes for other classes, unknown and
    not-a-face are left out, the rest renormalised); an image without such votes keeps a one-hot target of its
    label. Barsoum et al. 2016 train FER+ on these ("probabilistic label drawing / cross-entropy")."""
    from fer_core import store
    from fer_core.sources import ferplus

    out = np.eye(len(classes), dtype=np.float32)[y]
    st = store.family_status(name, cache).get("votes", {})
    if not st.get("complete"):
        from fer_core.errors import InvalidInput
        raise InvalidInput(f"Soft labels need crowd votes for {name} ({st.get('stale') or 'none are stored'}).",
                           f"Import FER+ (its own votes) or link it: `python -m fer_core link {name} ferplus`.")
    v = store.load_family(datasets.load(name, cache), "votes").set_index("id")
    col = {lab: f"votes_{c}" for c, lab in ferplus.EXPRESSION.items()}
    have = [c for c in classes if c in col]
    votes = v.reindex(ids)[[col[c] for c in have]].fillna(0).to_numpy(np.float32)
    tot = votes.sum(axis=1)
    ok = tot > 0
    soft = np.zeros((len(ids), len(classes)), np.float32)
    soft[:, [classes.index(c) for c in have]] = votes
    out[ok] = soft[ok] / tot[ok, None]
    return out, {"soft_images": int(ok.sum()), "one_hot_images": int((~ok).sum())}


def random_control(ids: np.ndarray, labels: np.ndarray, train: np.ndarray, kept: np.ndarray,
                   seed: int, forced: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The random-removal control of a recipe: from each class (given label) of the training split, remove as
    many images as the recipe removes from it, chosen at random (seeded) — same size and class mix as the
    curated set, so curated − control measures *which* images the recipe drops, not *how many*. The labels
    stay as given (the recipe's relabels are part of what it chose). ``forced``: images removed in both arms
    whatever is chosen (training copies of val/test images: keeping them would reward the control for memorising
    test images, so curated − control would measure leak removal too). Returns (ids, labels, removed per class)."""
    rng = np.random.default_rng([seed, 20261130])
    forced = np.zeros(len(ids), bool) if forced is None else forced
    keep_pos, removed = [], {}
    for c in sorted(set(labels[train])):
        pool = np.flatnonzero(train & (labels == c) & ~forced)
        n_keep = int((kept & (labels == c)).sum())
        removed[str(c)] = int((train & (labels == c)).sum() - n_keep)
        keep_pos.append(np.sort(rng.choice(pool, size=min(n_keep, len(pool)), replace=False)))
    pos = np.sort(np.concatenate(keep_pos)) if keep_pos else np.zeros(0, np.int64)
    return ids[pos], labels[pos], removed


@locks.writes_dataset("training-set assembly")
def assemble(name: str, source: str = "raw", recipe=None, use_overrides: bool = True, export_dir=None,
             size: int = 48, max_train: int | None = None, seed: int = 0, cache=None,
             progress: ProgressFn | None = None, cancel: CancelToken | None = None, soft: bool = False) -> TrainData:
    """The train/val/test sets of a run. ``source``: "raw", "recipe" (with ``recipe``) or "export" (with
    ``export_dir``). ``max_train``: a stratified random subset of the training images (smoke runs)."""
    from fer_core import splits

    ds = datasets.load(name, cache)
    cat = splits.apply(ds, ds.catalog.sort_values("id").reset_index(drop=True))   # a stored assignment, if any
    if not (cat["split"] == "test").any():
        raise DatasetError(f"'{name}' has no test split to evaluate on.",
                           "Import a dataset with a test split (FER2013 has PrivateTest), or split it first "
                           f"(`python -m fer_core split {name} --by subject`).")
    ids_all, px = pixels(ds, size, progress, cancel)
    info: dict = {"kind": source, "catalog_hash": ds.meta.get("catalog_hash")}   # the import the pixels came from
    if source == "raw":
        tr = cat[cat["split"] == "train"]
        va = cat[cat["split"] == "val"]
        train_ids, train_lab = tr["id"].to_numpy(), tr["label"].to_numpy()
        val_ids, val_lab = va["id"].to_numpy(), va["label"].to_numpy()
        ext = None
    elif source in ("recipe", "control"):
        from fer_core import decisions, recipe as recipe_mod

        if recipe is None:
            raise InvalidInput("A recipe run needs a recipe.", "Pass --recipe R.yaml, or pick one on the Train page.")
        if isinstance(recipe, (str, Path)):
            recipe = recipe_mod.Recipe.load(recipe)
        inputs = decisions.load_inputs(name, cache)
        ov = decisions.overrides_for(name, cache) if use_overrides else None
        decisions.check_crowd(inputs, recipe, cache)
        dec = decisions.run(inputs, recipe, ov)
        s = inputs.signals
        keep = dec["keep"].to_numpy()
        lab = dec["label_final"].to_numpy()
        sp = s["split"].to_numpy()
        t = keep & (sp == "train")
        v = keep & (sp == "val")
        train_ids, train_lab = s["id"].to_numpy()[t], lab[t]
        val_ids, val_lab = s["id"].to_numpy()[v], lab[v]
        from fer_core import staleness

        info.update(recipe=recipe.to_dict(), recipe_fingerprint=recipe.fingerprint(),
                    decisions=staleness.record(ds, s, dec, recipe),   # what the run was trained on (staleness)
                    overrides=0 if ov is None else int(len(ov)),
                    relabelled=int((lab[t] != s["label"].to_numpy()[t]).sum()))
        if source == "control":
            leak = recipe_mod.has_reason(dec["reasons"].to_numpy(), "leak")
            train_ids, train_lab, removed = random_control(s["id"].to_numpy(), s["label"].to_numpy(), sp == "train",
                                                           t, seed, forced=leak)
            info.update(control_removed=removed, relabelled=0)
        ext = None
    elif source == "export":
        ext = Path(export_dir)
        man = ext / "manifest.json"
        if not man.exists():
            raise InvalidInput(f"'{ext}' is not an export folder (no manifest.json).", "Pick a folder written by Export.")
        m = json.loads(man.read_text())
        if m["source"]["dataset"] != name:
            raise InvalidInput(f"The export was made from '{m['source']['dataset']}', not '{name}'.",
                               f"Train it as dataset '{m['source']['dataset']}'.")
        info.update(export=str(ext), recipe_fingerprint=m.get("recipe_fingerprint"), decisions=m.get("decisions"),
                    export_files_hash=m.get("files", {}).get("content_hash"))
        files = {sp: sorted(p for p in (ext / sp).rglob("*") if p.is_file()) for sp in ("train", "val")}
        train_ids = np.array([f"export:{p.relative_to(ext).as_posix()}" for p in files["train"]], dtype=object)
        train_lab = np.array([p.parent.name for p in files["train"]], dtype=object)
        val_ids = np.array([f"export:{p.relative_to(ext).as_posix()}" for p in files["val"]], dtype=object)
        val_lab = np.array([p.parent.name for p in files["val"]], dtype=object)
    else:
        raise InvalidInput(f"Unknown training source '{source}'.", "Use raw, recipe, control or export.")
    te = cat[cat["split"] == "test"]
    from fer_core.crowd import crowd_unsure_ids

    unsure = crowd_unsure_ids(name, cache)      # FER+: a tie / unknown / not-a-face vote is no test label
    if unsure:
        info["test_set_aside"] = {"crowd_unsure": int(te["id"].isin(unsure).sum())}
        te = te[~te["id"].isin(unsure)]
    if len(val_ids) == 0:
        raise DatasetError(f"'{name}' has no validation images for early stopping.",
                           "Use a dataset with a validation split (FER2013: PublicTest).")
    if len(train_ids) == 0:
        raise InvalidInput("No training images are left.", "Loosen the recipe.")
    if max_train and len(train_ids) > max_train:
        from sklearn.model_selection import train_test_split

        keep_idx, _ = train_test_split(np.arange(len(train_ids)), train_size=max_train, random_state=seed,
                                       stratify=train_lab)
        keep_idx = np.sort(keep_idx)
        train_ids, train_lab = train_ids[keep_idx], train_lab[keep_idx]
    classes = class_order(list(train_lab) + list(te["label"]))
    if ext is None:
        train = _split_from(ids_all, px, train_ids, train_lab, classes)
        val = _split_from(ids_all, px, val_ids, val_lab, classes)
    else:
        idx = {c: i for i, c in enumerate(classes)}
        bad = sorted((set(train_lab) | set(val_lab)) - set(classes))
        if bad:
            raise InvalidInput(f"Export labels unknown to the test split: {bad}.", "Check the export.")
        xt = load_images([ext / i.split(":", 1)[1] for i in train_ids], size, progress, cancel)
        xv = load_images([ext / i.split(":", 1)[1] for i in val_ids], size, progress, cancel)
        train = Split(train_ids, xt, np.array([idx[l] for l in train_lab]), train_lab)
        val = Split(val_ids, xv, np.array([idx[l] for l in val_lab]), val_lab)
    test = _split_from(ids_all, px, te["id"].to_numpy(), te["label"].to_numpy(), classes)
    if soft:
        train.soft, info["soft"] = soft_targets(name, train.ids, train.y, classes, cache)
    check_cancel(cancel)
    leaked = test_leakage(name, cache)
    if leaked is not None and unsure:
        all_te = np.sort(cat.loc[cat["split"] == "test", "id"].to_numpy())
        leaked = leaked[~np.isin(all_te, list(unsure))]
    return TrainData(name, classes, train, val, test, leaked, info)
