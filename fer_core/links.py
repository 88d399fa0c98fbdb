"""Links between datasets that hold the same faces (FER+ and FER2013), found by content and verified on pixels.

``link(a, b)`` pairs every image of ``a`` with the images of ``b`` that show the same picture: candidates are the
nearest neighbours on 16×16 thumbnails (faiss, exact search), kept only when the 48×48 pixels agree (mean
absolute difference ≤ ``max_mean`` grey levels: a FER+ PNG and its FER2013 JPG differ by JPEG noise, mean ~1.2 and
median 1 grey level; the next-nearest different pictures sit at 5–20 with almost nothing between 2 and 4, see
bench/RESULTS.md). A picture stored twice in ``b`` (FER2013 has pixel-identical copies across
its splits) is linked to every copy.

Stored in ``cache/links/<a>__<b>.parquet`` (+ ``.json``: both sides' catalog hashes, counts, the threshold),
names sorted. A link is only used while both sides are imported as they were: :func:`load` refuses a stale one,
and every import rebuilds the links of the dataset it imported (:func:`refresh_after_import`).

Through a link, the side without crowd votes gets the other side's (``votes`` family, :mod:`fer_core.crowd`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from fer_core import crowd, datasets, locks, store
from fer_core.errors import DatasetError, InvalidInput
from fer_core.fsutil import atomic_path, atomic_write_json
from fer_core.progress import CancelToken, ProgressFn, check_cancel, emit
from fer_core.store_paths import check_name, links_root

MAX_MEAN = 3.0        # grey levels (0–255): the valley between JPEG noise (≤ 2) and different pictures (≥ 5)
CANDIDATES = 4        # nearest thumbnails checked on the full pixels
THUMB = 16


@dataclass
class LinkResult:
    a: str
    b: str
    pairs: int
    a_linked: int
    a_images: int
    b_linked: int
    b_images: int
    seconds: float
    votes_written: str | None = None

    def summary(self) -> str:
        out = (f"Linked {self.a} ↔ {self.b}: {self.pairs:,} verified pairs; {self.a_linked:,} of {self.a_images:,} "
               f"{self.a} images and {self.b_linked:,} of {self.b_images:,} {self.b} images have a partner "
               f"({self.seconds:.0f} s).")
        if self.votes_written:
            out += f" Crowd votes written for {self.votes_written} through the link."
        return out


def _key(a: str, b: str) -> tuple[str, str]:
    check_name(a), check_name(b)
    if a == b:
        raise InvalidInput("A dataset cannot be linked to itself.", "Its own copies are found by the duplicates scan.")
    return tuple(sorted((a, b)))


def _files(a: str, b: str, cache=None) -> tuple[Path, Path]:
    x, y = _key(a, b)
    root = links_root(cache)
    return root / f"{x}__{y}.parquet", root / f"{x}__{y}.json"


def _thumbs(px: np.ndarray) -> np.ndarray:
    out = np.empty((len(px), THUMB * THUMB), np.float32)
    for i in range(0, len(px), 4096):
        chunk = px[i:i + 4096]
        out[i:i + len(chunk)] = np.stack([cv2.resize(np.asarray(p), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
                                          for p in chunk]).reshape(len(chunk), -1)
    return out


def match(px_a: np.ndarray, px_b: np.ndarray, max_mean: float = MAX_MEAN, k: int = CANDIDATES,
          cancel: CancelToken | None = None) -> pd.DataFrame:
    """Rows ``a, b, median_diff, mean_diff`` (positions into ``px_a`` / ``px_b``) of every verified pair."""
    import faiss

    ta, tb = _thumbs(px_a), _thumbs(px_b)
    index = faiss.IndexFlatL2(tb.shape[1])
    index.add(tb)
    k = min(k, len(tb))
    rows_a, rows_b, med, mean = [], [], [], []
    fa = px_a.reshape(len(px_a), -1)
    fb = px_b.reshape(len(px_b), -1)
    chunk = max(256, 8192 * CANDIDATES // k)     # ~75 MB of pixel differences per chunk, whatever k
    kth = np.full(len(ta), np.inf, np.float32)   # each image's k-th thumbnail distance
    for start in range(0, len(ta), chunk):
        check_cancel(cancel)
        dist, nn = index.search(ta[start:start + chunk], k)
        kth[start:start + len(nn)] = dist[:, -1]
        ia = np.repeat(np.arange(start, start + len(nn)), k)
        ib = nn.ravel()
        ok = ib >= 0
        ia, ib = ia[ok], ib[ok]
        diff = np.abs(fa[ia].astype(np.int16) - fb[ib].astype(np.int16))
        mn = diff.mean(axis=1)
        keep = mn <= max_mean
        rows_a.append(ia[keep])
        rows_b.append(ib[keep])
        med.append(np.median(diff[keep], axis=1))
        mean.append(mn[keep])
    # a picture stored many times (up to 7 copies in FER2013) can crowd its own JPEG twin out of the first k
    # thumbnails: look further for the images still without a partner (44 of FER+'s 35,708; all found at k=64)
    found = np.zeros(len(ta), bool)
    for r in rows_a:
        found[r] = True
    # only images whose k-th candidate is itself near (the same picture stored many times); an image of an
    # unrelated dataset has far candidates and is not searched again (64 candidates × every image: gigabytes)
    crowded = ~found & (kth <= THUMB * THUMB * max_mean ** 2)
    if k < 64 and crowded.any() and len(tb) > k:
        rest = np.flatnonzero(crowded)
        more = match(px_a[rest], px_b, max_mean, min(64, len(tb)), cancel)
        more["a"] = rest[more["a"].to_numpy()]
        rows_a.append(more["a"].to_numpy())
        rows_b.append(more["b"].to_numpy())
        med.append(more["median_diff"].to_numpy())
        mean.append(more["mean_diff"].to_numpy())
    return pd.DataFrame({"a": np.concatenate(rows_a), "b": np.concatenate(rows_b),
                         "median_diff": np.concatenate(med).astype(np.float32),
                         "mean_diff": np.concatenate(mean).astype(np.float32)})


def link(a: str, b: str, max_mean: float = MAX_MEAN, cache=None, progress: ProgressFn | None = None,
         cancel: CancelToken | None = None) -> LinkResult:
    """Find, verify and store the pairs of ``a`` and ``b``; then write crowd votes through the link for a side
    that has none of its own."""
    from fer_core.train.data import pixels

    t0 = time.time()
    x, y = _key(a, b)
    dx, dy = datasets.load(x, cache), datasets.load(y, cache)
    emit(progress, "link", 0, 3, "steps", message=f"decoding {x}")
    ids_x, px_x = pixels(dx, 48, progress, cancel)
    emit(progress, "link", 1, 3, "steps", message=f"decoding {y}")
    ids_y, px_y = pixels(dy, 48, progress, cancel)
    emit(progress, "link", 2, 3, "steps", message="matching")
    fwd = match(px_x, px_y, max_mean, cancel=cancel)
    back = match(px_y, px_x, max_mean, cancel=cancel).rename(columns={"a": "b", "b": "a"})
    m = pd.concat([fwd, back], ignore_index=True).drop_duplicates(["a", "b"]).sort_values(["a", "b"])
    table = pd.DataFrame({f"{x}_id": ids_x[m["a"]], f"{y}_id": ids_y[m["b"]],
                          "median_diff": m["median_diff"], "mean_diff": m["mean_diff"]})
    table = table.rename(columns={f"{x}_id": "a_id", f"{y}_id": "b_id"})
    meta = {"a": x, "b": y, "a_catalog_hash": dx.meta["catalog_hash"], "b_catalog_hash": dy.meta["catalog_hash"],
            "pairs": int(len(table)), "a_linked": int(table["a_id"].nunique()), "a_images": int(len(ids_x)),
            "b_linked": int(table["b_id"].nunique()), "b_images": int(len(ids_y)), "max_mean": float(max_mean),
            "median_of_median_diff": float(table["median_diff"].median()) if len(table) else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    pq, js = _files(x, y, cache)
    with locks.file_lock(js.with_suffix(".lock")):
        with atomic_path(pq) as tmp:
            table.to_parquet(tmp, index=False)
        atomic_write_json(js, meta)     # the meta last: only then is the link complete
    written = votes_through(x, y, cache)
    emit(progress, "link", 3, 3, "steps", message="done")
    return LinkResult(x, y, meta["pairs"], meta["a_linked"], meta["a_images"], meta["b_linked"], meta["b_images"],
                      time.time() - t0, written)


def write_pairs(a: str, b: str, pairs: pd.DataFrame, how: str, cache=None) -> dict:
    """Store a link whose pairs are known by construction (``pairs``: columns ``<a>_id``, ``<b>_id``), e.g. a
    collection and each of its members (the collection's build knows which member image each of its images
    is). ``how`` is recorded; such a link is rebuilt by its maker, never re-matched on pixels."""
    x, y = _key(a, b)
    dx, dy = datasets.load(x, cache), datasets.load(y, cache)
    table = pd.DataFrame({"a_id": pairs[f"{x}_id"].to_numpy(), "b_id": pairs[f"{y}_id"].to_numpy(),
                          "median_diff": np.float32(np.nan), "mean_diff": np.float32(np.nan)})
    meta = {"a": x, "b": y, "a_catalog_hash": dx.meta["catalog_hash"], "b_catalog_hash": dy.meta["catalog_hash"],
            "pairs": int(len(table)), "a_linked": int(table["a_id"].nunique()), "a_images": int(len(dx.catalog)),
            "b_linked": int(table["b_id"].nunique()), "b_images": int(len(dy.catalog)), "how": how,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    pq, js = _files(x, y, cache)
    with locks.file_lock(js.with_suffix(".lock")):
        with atomic_path(pq) as tmp:
            table.to_parquet(tmp, index=False)
        atomic_write_json(js, meta)
    return meta


def status(a: str, b: str, cache=None) -> dict:
    """The link's meta plus ``state``: "missing", "stale" (with ``why``) or "ok"."""
    pq, js = _files(a, b, cache)
    if not (pq.exists() and js.exists()):
        return {"state": "missing", "why": "there is none"}
    meta = json.loads(js.read_text())
    for side in ("a", "b"):
        try:
            now = datasets.load(meta[side], cache).meta.get("catalog_hash")
        except DatasetError:
            return {**meta, "state": "stale", "why": f"'{meta[side]}' is no longer imported"}
        if now != meta[f"{side}_catalog_hash"]:
            return {**meta, "state": "stale", "why": f"'{meta[side]}' was re-imported since the link was made"}
    return {**meta, "state": "ok"}


def load(a: str, b: str, cache=None) -> pd.DataFrame:
    """The pairs as columns ``<a>_id, <b>_id, median_diff, mean_diff`` (in the order asked). Refuses a missing
    or stale link with what to do."""
    st = status(a, b, cache)
    if st["state"] != "ok":
        why = "there is none" if st["state"] == "missing" else st["why"]
        raise DatasetError(f"No usable link between '{a}' and '{b}': {why}.",
                           f"Link them: `python -m fer_core link {a} {b}` (or the Duplicates & leakage page).")
    pq, _ = _files(a, b, cache)
    t = pd.read_parquet(pq).rename(columns={"a_id": f"{st['a']}_id", "b_id": f"{st['b']}_id"})
    return t[[f"{a}_id", f"{b}_id", "median_diff", "mean_diff"]]


def linked(name: str, cache=None) -> list[dict]:
    """Every link file that names ``name``: [{other, state, why?, pairs, …}]."""
    out = []
    for js in sorted(links_root(cache).glob("*__*.json")):
        try:
            meta = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        if name in (meta.get("a"), meta.get("b")):
            other = meta["b"] if meta["a"] == name else meta["a"]
            out.append({**status(name, other, cache), "other": other})
    return out


def _has_own_votes(name: str, cache=None) -> bool:
    ds = datasets.load(name, cache)
    meta_p = store.family_dir(ds, "votes") / "meta.json"
    if not meta_p.exists():
        return False
    meta = json.loads(meta_p.read_text())
    return meta.get("source") == name and meta.get("catalog_hash") == ds.meta["catalog_hash"]


def votes_through(a: str, b: str, cache=None) -> str | None:
    """Write the ``votes`` family of whichever side has none of its own, from the other side's votes through
    the link (an image linked to several pictures takes the closest one's votes). Returns that side's name."""
    own = {n: _has_own_votes(n, cache) for n in (a, b)}
    if own[a] == own[b]:
        return None
    src, dst = (a, b) if own[a] else (b, a)
    with locks.dataset_lock(dst, "crowd votes through a link", cache):
        # everything read under the lock: an import of dst that relinked meanwhile is not overwritten with
        # votes from the pairs of before it (load() refuses a link that no longer matches either side)
        pairs = load(src, dst, cache).sort_values(["mean_diff", "median_diff", f"{src}_id"], kind="stable")
        pairs = pairs.drop_duplicates(f"{dst}_id", keep="first")
        dsrc, ddst = datasets.load(src, cache), datasets.load(dst, cache)
        votes = store.load_family(dsrc, "votes")
        v = pairs.merge(votes[["id"] + crowd.VOTE_COLS], left_on=f"{src}_id", right_on="id", how="inner")
        v = v.drop(columns=["id"]).rename(columns={f"{dst}_id": "id"})[["id"] + crowd.VOTE_COLS]
        cat = ddst.catalog
        table = crowd.table_for(cat["id"].to_numpy(), cat["label"].to_numpy(), v, src)
        store.write_family_table(ddst, "votes", table, {"source": src,
                                                        "source_catalog_hash": dsrc.meta["catalog_hash"],
                                                        "through_link": True})
    return dst


def refresh_after_import(ds: datasets.Dataset) -> list[str]:
    """After an import of ``ds``: rebuild each of its links whose other side is still imported (a link is never
    left stale); returns the names relinked."""
    done = []
    for info in linked(ds.name, ds.home.parent.parent):
        if info["state"] == "ok" or info.get("how"):   # a link made by construction: its maker rebuilds it
            continue
        other = info["other"]
        try:
            datasets.load(other, ds.home.parent.parent)
        except DatasetError:
            continue    # the other side is gone: the link stays stale and says so
        link(ds.name, other, info.get("max_mean", MAX_MEAN), cache=ds.home.parent.parent)
        done.append(other)
    return done


def leaked_through(test_name: str, test_ids: np.ndarray, train_name: str, cache=None) -> np.ndarray:
    """Per test image of ``test_name``: it shows the same picture as an image of ``train_name`` that is in that
    dataset's training split, or as a test image there that has a training copy (its leakage flag)."""
    from fer_core import splits
    from fer_core.train.data import test_leakage

    pairs = load(test_name, train_name, cache)
    dtr = datasets.load(train_name, cache)
    other = splits.apply(dtr, dtr.catalog)[["id", "split"]].sort_values("id")   # the split a person assigned
    bad = set(other.loc[other["split"] == "train", "id"])
    leak = test_leakage(train_name, cache)
    if leak is not None:
        te = other.loc[other["split"] == "test", "id"].to_numpy()
        bad |= set(te[leak])
    hit = set(pairs.loc[pairs[f"{train_name}_id"].isin(bad), f"{test_name}_id"])
    return np.isin(np.asarray(test_ids), list(hit))
