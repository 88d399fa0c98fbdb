"""Is an export or a training run still made on the current decisions? What changed, and how much?

A *decisions record* (:func:`record`) describes the decisions something was made from: a fingerprint of the
decisions themselves (every kept image id with its split and final label), kept/rejected counts, the recipe
(fingerprint and name), the overrides in effect (count and fingerprint), the signal families they rested on
(with the time each finished) and the import (catalog hash). An export keeps it in ``manifest.json``
(``decisions``), a run in ``config.json`` (``source.decisions``). The kept ids themselves are saved once per
fingerprint under ``cache/datasets/<name>/decisions/<fingerprint>.parquet``, so a later comparison can count the
images that differ.

:func:`is_stale` compares an export's manifest or a run's config with the current decisions (what the Export
and Train pages would use now: the current recipe with today's signals and overrides) and says why:
``(False, "made on the current decisions")``, ``(True, "stale: made before face signals changed the decisions
(1,098 images differ)")``, or ``(None, "cannot tell: …")`` for what was made before records existed.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fer_core.fsutil import atomic_path

FAMILY_WORDS = {"quality": "quality signals", "duplicates": "duplicate signals", "faces": "face signals",
                "embeddings": "face signals", "faces_mtcnn": "MTCNN face scores", "labels": "label signals"}


def _h(*parts) -> str:
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        h.update("\n".join(map(str, np.asarray(p).tolist())).encode() + b"\0")
    return h.hexdigest()


def fingerprint(signals: pd.DataFrame, dec: pd.DataFrame) -> str:
    """The decisions themselves: which images are kept and their final labels. The images (ids, in id order)
    and their splits are those of the import, named by its catalog hash (a few ms on FER2013: it runs on every
    page view)."""
    keep = dec["keep"].to_numpy(bool)
    codes, labels = pd.factorize(dec["label_final"].to_numpy()[keep], sort=True)
    h = hashlib.blake2b(digest_size=12)
    h.update((signals.attrs.get("catalog_hash") or _h(signals["id"].to_numpy(), signals["split"].to_numpy())).encode())
    h.update(b"\0" + np.packbits(keep).tobytes() + b"\0" + "\n".join(map(str, labels)).encode() + b"\0")
    h.update(codes.astype(np.int32).tobytes())
    return h.hexdigest()


def overrides_in(signals: pd.DataFrame, dec: pd.DataFrame) -> dict:
    """The overrides in effect on these images (count and fingerprint), as the decisions applied them."""
    ov = dec["override"].to_numpy()
    on = ov != ""
    return {"count": int(on.sum()),
            "fingerprint": _h(signals["id"].to_numpy()[on], ov[on], dec["label_final"].to_numpy()[on])}


def last_override_event(ds) -> int:
    """The sequence number of the latest override event (0: none); a read-only query, cheap on every page view."""
    import sqlite3

    p = ds.paths.review_db
    if not p.exists():
        return 0
    try:
        c = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=5)
        try:
            return int(c.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0)
        finally:
            c.close()
    except sqlite3.Error:
        return 0


def signal_stamp(ds, signals: pd.DataFrame | None = None) -> dict:
    """{family: finished} of the signal families ``signals`` were loaded from (``store.load_signals`` records
    it); read from the disk only for a frame that does not carry it."""
    if signals is not None and "signal_stamp" in signals.attrs:
        return dict(signals.attrs["signal_stamp"])
    from fer_core import store

    cache = ds.home.parent.parent   # cache/datasets/<name>
    return {f: s.get("finished") for f, s in store.family_status(ds.name, cache).items() if s["complete"]}


def record(ds, signals: pd.DataFrame, dec: pd.DataFrame, rec=None, save: bool = True) -> dict:
    """The decisions record of ``dec`` (computed with recipe ``rec`` on ``signals``); ``save``: keep its kept
    ids under the dataset's ``decisions/`` folder (once per fingerprint, atomically)."""
    fp = fingerprint(signals, dec)
    keep = dec["keep"].to_numpy()
    out = {"fingerprint": fp, "kept": int(keep.sum()), "rejected": int((~keep).sum()),
           "catalog_hash": ds.meta.get("catalog_hash"),
           "recipe_fingerprint": rec.fingerprint() if rec is not None else None,
           "recipe_name": getattr(rec, "name", None), "overrides": overrides_in(signals, dec),
           "signals": signal_stamp(ds, signals)}
    if save:
        _save_snapshot(ds, fp, signals, dec)
    return out


def _snapshot_path(ds, fp: str) -> Path:
    return ds.paths.decision_records / f"{fp}.parquet"


def _save_snapshot(ds, fp: str, signals: pd.DataFrame, dec: pd.DataFrame) -> None:
    p = _snapshot_path(ds, fp)
    if p.exists():
        return
    keep = dec["keep"].to_numpy()
    df = pd.DataFrame({"id": signals["id"].to_numpy()[keep], "split": signals["split"].to_numpy()[keep],
                       "label": dec["label_final"].to_numpy()[keep]}).astype(str)
    try:
        with atomic_path(p) as tmp:
            df.to_parquet(tmp, index=False)
    except OSError:   # a full disk: the record still works, only the count of differing images is lost
        pass


@dataclass
class Current:
    """The current decisions: their record, and the kept images (for counting differences)."""
    record: dict
    kept: pd.Series = field(repr=False)   # "split/label" by id, kept images only
    _differing: dict = field(default_factory=dict, repr=False)   # per saved fingerprint (runs share them)

    @classmethod
    def of(cls, ds, signals: pd.DataFrame, dec: pd.DataFrame, rec=None) -> "Current":
        keep = dec["keep"].to_numpy()
        sl = signals["split"].to_numpy()[keep].astype(str) + "/" + dec["label_final"].to_numpy()[keep].astype(str)
        kept = pd.Series(sl, index=signals["id"].to_numpy()[keep])
        return cls(record(ds, signals, dec, rec, save=False), kept)


def differing(ds, fp: str, current: Current) -> int | None:
    """How many images are decided differently (kept or not, split, final label) by the saved decisions ``fp``
    than by the current ones; None when that snapshot is not on disk."""
    if fp not in current._differing:
        old = _snapshot(str(_snapshot_path(ds, fp)))
        if old is None:
            return None
        both = old.index.intersection(current.kept.index)
        changed = int((old.loc[both] != current.kept.loc[both]).sum())
        current._differing[fp] = changed + (len(old) - len(both)) + (len(current.kept) - len(both))
    return current._differing[fp]


_SNAPSHOTS: dict[str, pd.Series] = {}
_SNAPSHOTS_LOCK = threading.Lock()   # the app's sessions run in threads


def _snapshot(path: str) -> pd.Series | None:
    """A saved decisions snapshot ("split/label" by id); content-addressed, so what is read once stays true."""
    with _SNAPSHOTS_LOCK:
        if path not in _SNAPSHOTS:
            try:
                old = pd.read_parquet(path)
            except (OSError, ValueError):
                return None
            while len(_SNAPSHOTS) >= 16:
                _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
            _SNAPSHOTS[path] = pd.Series((old["split"] + "/" + old["label"]).to_numpy(), index=old["id"].to_numpy())
        return _SNAPSHOTS[path]


def causes(old: dict, cur: dict) -> list[str]:
    """What differs between two decisions records, as noun phrases ("face signals", "a recipe change", …)."""
    out: list[str] = []
    a, b = old.get("signals") or {}, cur.get("signals") or {}
    added = list(dict.fromkeys(FAMILY_WORDS.get(f, f) for f in b if f not in a))
    redone = list(dict.fromkeys(FAMILY_WORDS.get(f, f) for f in b if f in a and a[f] != b[f]))
    gone = list(dict.fromkeys(FAMILY_WORDS.get(f, f) for f in a if f not in b))
    recipe_changed = old.get("recipe_fingerprint") != cur.get("recipe_fingerprint")
    both_default = all(str(r.get("recipe_name") or "").startswith("default") for r in (old, cur))
    for w in added:
        out.append(w + (" (the default recipe now uses them)" if recipe_changed and both_default else ""))
    out += [f"recomputed {w}" for w in redone if w not in added] + [f"{w} going out of date" for w in gone]
    if recipe_changed and not (added and both_default):
        out.append("a recipe change")
    oa, ob = old.get("overrides") or {}, cur.get("overrides") or {}
    if oa.get("fingerprint") != ob.get("fingerprint"):
        out.append(f"overrides ({oa.get('count', 0):,} → {ob.get('count', 0):,})")
    return out


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def explain(ds, old: dict, current: Current) -> str:
    """"made before face signals changed the decisions (1,098 images differ)"."""
    n = differing(ds, old["fingerprint"], current)
    size = f"{n:,} images differ" if n is not None else \
        f"kept {old.get('kept', 0):,} then, {current.record['kept']:,} now"
    cs = causes(old, current.record)
    if cs == ["a recipe change"]:
        return f"made with another recipe than the current one ({size})"
    return f"made before {_join(cs)} changed the decisions ({size})" if cs else f"made on earlier decisions ({size})"


def is_stale(item: dict, current: Current, ds=None) -> tuple[bool | None, str]:
    """``item``: an export's manifest or a run's config. (stale, why) against the ``current`` decisions; stale
    is None when it cannot be told (made before decisions records existed, and nothing else shows a change)."""
    cur = current.record
    if item.get("format") == "fer-export/1":   # an export manifest
        made, cat, what = item.get("decisions"), (item.get("source") or {}).get("catalog_hash"), "export"
    else:                                      # a run config
        src = item.get("source") or {}
        made, cat, what = src.get("decisions"), src.get("catalog_hash"), src.get("kind")
    if cat and cur.get("catalog_hash") and cat != cur["catalog_hash"]:
        return True, "stale: made from an earlier import of the dataset"
    if what == "raw":
        return False, "raw data: curation does not change it"
    if not made:
        after = (item.get("counts") or {}).get("after_total")
        if after is not None and after != cur["kept"]:
            return True, f"stale: made on other decisions (kept {after:,} then, {cur['kept']:,} now)"
        return None, "cannot tell: made before the app recorded the decisions it used"
    if made.get("fingerprint") == cur["fingerprint"]:
        return False, "made on the current decisions"
    if ds is None:
        from fer_core import datasets

        ds = datasets.load((item.get("source") or {}).get("dataset") or item.get("dataset"))
    return True, "stale: " + explain(ds, made, current)
