"""The signal store and the scan that fills it.

Layout: ``cache/datasets/<name>/signals/<family>/v<VERSION>/``::

    parts/part-*.parquet   rows written batch by batch (each file atomically); a killed scan resumes
                           from them
    table.parquet          all rows, one per image id, sorted by id (written when the scan completes)
    <derived>.parquet      whole-dataset tables (duplicate pairs), tagged with the catalog hash
    meta.json

Rows are keyed by image id, tables by family version: bumping one family's VERSION recomputes only
that family. A scan decodes each image once for all families that still miss it, in parallel worker
processes, in fixed batches, with progress.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer_core import datasets, locks
from fer_core.errors import DatasetError, DiskFull
from fer_core.fsutil import atomic_path, atomic_write_json
from fer_core.progress import CancelToken, ProgressFn, check_cancel, emit
from fer_core.signals.base import SignalFamily, families, get_family
from fer_core.signals.decode import decode_batch

DEFAULT_FAMILIES = ("quality", "duplicates")
BATCH = 1024


def family_dir(ds: datasets.Dataset, family: str, version: int | None = None) -> Path:
    return ds.paths.family(family, version if version is not None else get_family(family).version)


# ---- decoding (runs in worker processes): fer_core.signals.decode ------------------------------


def _work(args) -> tuple[int, dict[str, dict[str, np.ndarray]]]:
    batch_no, items, fams, extra = args
    batch = decode_batch(items)
    batch.extra = extra
    out = {}
    for f in fams:
        cols = get_family(f).compute(batch)
        cols = {"id": np.array(batch.ids, dtype=object), **cols}
        out[f] = cols
    return batch_no, out, batch.ok


def _pool_context() -> str:
    """How the scan's worker processes start: forked (cheap, the usual case: a CLI job's fresh process), unless
    TensorFlow runs in this process (a notebook or test that trained first): a fork copies its threads' held locks
    and the child can wait on them forever, so the workers then come from a fresh fork server."""
    return "forkserver" if "tensorflow" in sys.modules else "fork"


@contextmanager
def _local_batches(args: list, workers: int | None):
    """The local engine: ``_work`` over the batches in a process pool (in-process for one worker)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(args)))
    pool = mp.get_context(_pool_context()).Pool(workers) if workers > 1 else None
    try:
        yield pool.imap_unordered(_work, args) if pool else map(_work, args)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


# ---- scan -------------------------------------------------------------------------------------

@dataclass
class ScanResult:
    dataset: str
    computed: dict[str, int]     # family -> rows computed in this run
    reused: dict[str, int]       # family -> rows already in the store
    seconds: float
    errors: int

    def summary(self) -> str:
        parts = [f"{f}: {self.computed[f]:,} computed, {self.reused[f]:,} cached" for f in self.computed]
        return f"scan of {self.dataset}: " + "; ".join(parts) + f" — {self.errors:,} unreadable, {self.seconds:.1f} s"


def _part_prefix(catalog_hash: str) -> str:
    return f"part-{catalog_hash[:12]}-"


def _usable_ids(df: pd.DataFrame) -> pd.Series:
    """Ids of rows that can be reused: a row of an image that could not be read is retried next scan."""
    if "scan_error" in df:
        df = df[df["scan_error"].fillna("") == ""]
    return df["id"]


def _existing_ids(fdir: Path, catalog_hash: str) -> set[str]:
    """Ids already computed. Rows are keyed by content hash, so a consolidated table's readable rows stay
    valid across re-imports; parts left by an interrupted scan are reused only by a scan of the same
    catalog (anything else is deleted), and unreadable rows are never reused."""
    ids: set[str] = set()
    t = fdir / "table.parquet"
    if t.exists():
        cols = ["id", "scan_error"] if "scan_error" in _parquet_columns(t) else ["id"]
        ids.update(_usable_ids(pd.read_parquet(t, columns=cols)))
    for p in sorted((fdir / "parts").glob("part-*.parquet")):
        if not p.name.startswith(_part_prefix(catalog_hash)):
            p.unlink(missing_ok=True)  # written against another import of the dataset
            continue
        try:
            cols = ["id", "scan_error"] if "scan_error" in _parquet_columns(p) else ["id"]
            ids.update(_usable_ids(pd.read_parquet(p, columns=cols)))
        except Exception:  # noqa: BLE001 - a part is written atomically; anything unreadable is redone
            p.unlink(missing_ok=True)
    return ids


def _parquet_columns(p: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.ParquetFile(p).schema_arrow.names


def _write_part(fdir: Path, cols: dict[str, np.ndarray], keep: np.ndarray, catalog_hash: str
                ) -> tuple[Path, pd.DataFrame]:
    df = pd.DataFrame({k: v[keep] for k, v in cols.items()})
    final = fdir / "parts" / f"{_part_prefix(catalog_hash)}{df['id'].iloc[0]}-{len(df)}.parquet"
    with atomic_path(final) as tmp:
        df.to_parquet(tmp, index=False)
    return final, df


def _consolidate(fdir: Path, catalog_ids: pd.Index, fresh: dict[Path, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Merge the table, parts left by an interrupted run, and this run's parts (``fresh``, in memory)."""
    fresh = fresh or {}
    frames = []
    if (fdir / "table.parquet").exists():
        frames.append(pd.read_parquet(fdir / "table.parquet"))
    for p in sorted((fdir / "parts").glob("part-*.parquet")):
        frames.append(fresh[p] if p in fresh else pd.read_parquet(p))
    t = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"id": []})
    t = t.drop_duplicates("id", keep="last")
    t = t[t["id"].isin(catalog_ids)].sort_values("id").reset_index(drop=True)
    with atomic_path(fdir / "table.parquet") as tmp:
        t.to_parquet(tmp, index=False)
    shutil.rmtree(fdir / "parts", ignore_errors=True)
    return t


def _phases(fams: list[str]) -> list[list[str]]:
    """Families grouped so that each runs after the families it depends on (``DEPENDS``)."""
    todo = list(dict.fromkeys(fams))
    for f in list(todo):
        for d in get_family(f).depends:
            if d not in todo:
                todo.insert(0, d)
    phases, done = [], set()
    while todo:
        ready = [f for f in todo if set(get_family(f).depends) <= done]
        phases.append(ready)
        done |= set(ready)
        todo = [f for f in todo if f not in ready]
    return phases


@locks.writes_dataset("scan")
def scan(name: str, signals: list[str] | tuple[str, ...] = DEFAULT_FAMILIES, workers: int | None = None,
         batch_size: int = BATCH, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
         cache=None, engine: str | None = None, address: str | None = None) -> ScanResult:
    """Compute every missing signal of ``signals`` (and what they depend on) for dataset ``name``;
    resumable and incremental. ``engine``: "local" (default, ``$FER_ENGINE``) or "ray" (``address``: the
    cluster, see :mod:`fer_core.ray_engine`; ``workers`` is then the actors per model pool)."""
    from fer_core.ray_engine import engine_of

    t0 = time.time()
    engine = engine_of(engine)
    ds = datasets.load(name, cache)
    for f in signals:
        if not get_family(f).per_image:
            from fer_core.errors import InvalidInput
            raise InvalidInput(f"The {f} signals are not computed by a scan: they come from "
                               f"{get_family(f).made_by.format(name=name)}.", "Run that instead.")
        ok, why = family_available(f)
        if not ok:
            from fer_core.models import ModelMissing
            raise ModelMissing(f"Cannot compute the {f} signals: {why}", "Install what it names, then scan again.")
    total = ScanResult(name, {}, {}, 0.0, 0)
    from contextlib import nullcontext

    from fer_core import ray_engine
    try:
        with ray_engine.connected(address) if engine == "ray" else nullcontext():  # one Ray session for all phases
            for phase in _phases(list(signals)):
                r = _scan_phase(ds, phase, workers, batch_size, progress, cancel, engine, address)
                total.computed.update(r.computed)
                total.reused.update(r.reused)
                total.errors = max(total.errors, r.errors)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFull("The disk filled up during the scan. The batches finished so far are kept.",
                           f"Free space on the disk holding {ds.home} and scan again: it resumes from them.") from exc
        raise
    total.seconds = time.time() - t0
    return total


def family_available(family: str) -> tuple[bool, str]:
    return get_family(family).available()


def _error_family() -> SignalFamily:
    """The family whose ``error_column`` says why an image could not be read (quality)."""
    return next(f for f in families() if f.error_column)


def _unreadable(table: pd.DataFrame | None, fam: SignalFamily) -> pd.Series:
    if table is None:
        return pd.Series([], dtype=bool)
    return table[fam.error_column].fillna("") != ""


def _scan_phase(ds, fams: list[str], workers, batch_size, progress, cancel, engine="local", address=None
                ) -> ScanResult:
    t0 = time.time()
    cat = ds.catalog.sort_values("id").reset_index(drop=True)
    all_ids = pd.Index(cat["id"])
    fdirs = {f: family_dir(ds, f) for f in fams}
    batch_size = min([batch_size] + [get_family(f).batch_size or batch_size for f in fams])
    chash = ds.meta["catalog_hash"]
    missing = {}
    for f, d in fdirs.items():
        d.mkdir(parents=True, exist_ok=True)
        have = _existing_ids(d, chash)
        missing[f] = ~all_ids.isin(list(have)) if have else np.ones(len(all_ids), bool)
    retry = np.zeros(len(all_ids), bool)
    err = _error_family()
    q = family_dir(ds, err.name) / "table.parquet"
    if q.exists():  # images unreadable at an earlier scan are retried by every family
        qt = pd.read_parquet(q, columns=["id", err.error_column])
        retry = all_ids.isin(qt.loc[_unreadable(qt, err), "id"])
        for f in fams:
            missing[f] |= retry
    extra_cols: dict[str, np.ndarray] = {}
    for f in fams:
        for dep, cols in get_family(f).extra_columns.items():
            t = load_family(ds, dep)
            t = t.set_index("id").reindex(all_ids)
            for c in cols:
                extra_cols[c] = t[c].to_numpy()
    any_missing = np.zeros(len(all_ids), bool)
    for m in missing.values():
        any_missing |= m
    todo = np.flatnonzero(any_missing)
    paths = (str(ds.images) + os.sep + cat["path"]).to_numpy()
    jobs = []
    for b, start in enumerate(range(0, len(todo), batch_size)):
        sel = todo[start:start + batch_size]
        fam_b = [f for f in fams if missing[f][sel].any()]
        items = list(zip(cat["id"].to_numpy()[sel], paths[sel], cat["width"].to_numpy()[sel],
                         cat["height"].to_numpy()[sel]))
        jobs.append((b, items, fam_b, sel, {c: v[sel] for c, v in extra_cols.items()}))
    computed = {f: 0 for f in fams}
    fresh: dict[str, dict[Path, pd.DataFrame]] = {f: {} for f in fams}
    stage = "scan" if set(fams) <= set(DEFAULT_FAMILIES) else "scan:" + "+".join(fams)
    emit(progress, stage, 0, len(todo), "images", message=", ".join(fams))
    done = 0
    if jobs:
        sels = {b: sel for b, _, _, sel, _ in jobs}
        args = [(b, items, fam_b, extra) for b, items, fam_b, _, extra in jobs]
        if engine == "ray":   # the same batches, run by Ray Data actor pools (fer_core/ray_engine.py)
            from fer_core import ray_engine
            runner = ray_engine.run_batches(args, fams, str(ds.images), actors=workers, address=address)
        else:
            runner = _local_batches(args, workers)
        with runner as results:
            for b, out, ok in results:
                check_cancel(cancel)
                sel = sels[b]
                # a retried image that still cannot be read keeps its earlier row: nothing is rewritten or
                # counted, so a file that stays unreadable does not make every later scan redo the tables
                again = retry[sel] & ~ok
                for f, cols in out.items():
                    keep = missing[f][sel] & ~again
                    if not keep.any():
                        continue
                    path, df = _write_part(fdirs[f], cols, keep, chash)
                    fresh[f][path] = df
                    computed[f] += int(keep.sum())
                done += len(sel)
                emit(progress, stage, done, len(todo), "images", message=", ".join(fams))
    errors = 0
    from concurrent.futures import ThreadPoolExecutor

    derived_jobs = []
    pending_meta = []
    with ThreadPoolExecutor(max_workers=1) as side:  # duplicate pairs (faiss, no GIL) overlap the rest
        for f in sorted(fams, key=lambda f: not get_family(f).derived):
            emit(progress, "finalize", fams.index(f), len(fams), "families", message=f)
            fam = get_family(f)
            meta_path = fdirs[f] / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            up_to_date = (not computed[f] and not list((fdirs[f] / "parts").glob("part-*.parquet"))
                          and meta.get("catalog_hash") == ds.meta["catalog_hash"]
                          and (fdirs[f] / "table.parquet").exists())
            if up_to_date:
                if fam.error_column:
                    errors = int(_unreadable(pd.read_parquet(fdirs[f] / "table.parquet", columns=[fam.error_column]),
                                             fam).sum())
                continue
            table = _consolidate(fdirs[f], all_ids, fresh[f])
            if fam.error_column:
                errors = int(_unreadable(table, fam).sum())
            if fam.derived:
                derived_jobs.append(side.submit(_write_derived, fdirs[f], fam, table, ds.meta["catalog_hash"], ds))
            pending_meta.append((meta_path, {
                "family": f, "version": fam.version, "rows": int(len(table)), "catalog_hash": ds.meta["catalog_hash"],
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        for j in derived_jobs:
            j.result()
    now = json.loads((ds.paths.data / "dataset.json").read_text()).get("catalog_hash")
    if now != chash:  # cannot happen under the dataset lock; never let such a table pass for complete
        raise DatasetError(f"'{ds.name}' was re-imported while it was being scanned.",
                           f"Scan it again (`python -m fer_core scan {ds.name}`).")
    for meta_path, meta in pending_meta:  # only now is each family complete (derived tables included)
        atomic_write_json(meta_path, meta)
    emit(progress, "finalize", len(fams), len(fams), "families")
    reused = {f: int(len(all_ids) - missing[f].sum()) for f in fams}
    return ScanResult(ds.name, computed, reused, time.time() - t0, errors)


def _write_derived(fdir: Path, fam: SignalFamily, table: pd.DataFrame, catalog_hash: str, ds) -> None:
    derived = fam.finalize(table, ds.catalog[["id", "split", "label"]])
    if set(derived) != set(fam.derived):   # the contract: exactly the tables it declares
        raise RuntimeError(f"{fam.name}.finalize wrote {sorted(derived)}, declares {sorted(fam.derived)}")
    for key, df in derived.items():
        with atomic_path(fdir / f"{key}.parquet") as tmp:
            df.to_parquet(tmp, index=False)
    atomic_write_json(fdir / "derived.json", {"catalog_hash": catalog_hash})


def write_family_table(ds: datasets.Dataset, family: str, table: pd.DataFrame, meta: dict) -> None:
    """Store a whole-table family (computed by a job of its own, e.g. the label folds): its table, then its
    meta (only then is it complete). ``table`` holds one row per image of the catalog."""
    fam = get_family(family)
    if fam.per_image:
        raise ValueError(f"{family} is filled by the scan")
    missing = set(fam.column_names()) - set(table.columns)
    if missing or len(table) != len(ds.catalog):
        raise ValueError(f"{family} table: {len(table)} rows for {len(ds.catalog)} images, missing {sorted(missing)}")
    fdir = family_dir(ds, family)
    with atomic_path(fdir / "table.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    atomic_write_json(fdir / "meta.json", {"family": family, "version": fam.version, "rows": int(len(table)),
                                           "catalog_hash": ds.meta["catalog_hash"],
                                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta})


# ---- reading ----------------------------------------------------------------------------------

def family_status(name: str, cache=None) -> dict[str, dict]:
    ds = datasets.load(name, cache)
    n = int(ds.meta.get("n_images", -1))
    if n < 0:
        n = len(ds.catalog)
    out = {}
    for fam in families():
        d = family_dir(ds, fam.name)
        meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
        complete = bool(meta) and meta.get("catalog_hash") == ds.meta["catalog_hash"] and meta.get("rows") == n
        stale = _stale_source(meta, ds.name, cache) if complete else ""
        out[fam.name] = {"version": fam.version, "complete": complete and not stale, "rows": meta.get("rows", 0),
                         "images": n, "finished": meta.get("finished"), "stale": stale}
    return out


def _stale_source(meta: dict, name: str, cache=None) -> str:
    """Why a table written from another dataset (votes through a link) no longer matches it, or ""."""
    src = meta.get("source")
    if not src or src == name or "source_catalog_hash" not in meta:
        return ""
    try:
        now = datasets.load(src, cache).meta.get("catalog_hash")
    except DatasetError:
        return f"'{src}', where these values come from, is no longer imported"
    if now != meta["source_catalog_hash"]:
        return f"'{src}', where these values come from, was re-imported since"
    return ""


def load_family(ds: datasets.Dataset, family: str) -> pd.DataFrame | None:
    p = family_dir(ds, family) / "table.parquet"
    return pd.read_parquet(p) if p.exists() else None


def load_derived(ds: datasets.Dataset, family: str, key: str) -> pd.DataFrame | None:
    p = family_dir(ds, family) / f"{key}.parquet"
    return pd.read_parquet(p) if p.exists() else None


def load_signals(name: str, cache=None, require: tuple[str, ...] = ("quality",)) -> pd.DataFrame:
    """Catalog columns + every computed signal column, one row per image, sorted by id."""
    ds = datasets.load(name, cache)
    cat = ds.catalog[["id", "path", "split", "usage", "label", "label_orig", "width", "height"]]
    cat = cat.sort_values("id").reset_index(drop=True)
    status = family_status(name, cache)
    for f in require:
        if not status[f]["complete"]:
            raise DatasetError(f"The {f} signals of '{name}' are not computed (or out of date).",
                               f"Run a scan first: Scan button on the Quality page, or `python -m fer_core scan {name}`.")
    out = cat
    for fam in families():
        if not status[fam.name]["complete"]:
            continue
        p = family_dir(ds, fam.name) / "table.parquet"
        cols = [c for c in _parquet_columns(p) if c not in fam.load_exclude]
        t = fam.upgrade(pd.read_parquet(p, columns=cols), cat)
        out = out.merge(t, on="id", how="left", validate="one_to_one")
        scores = load_derived(ds, fam.name, "scores")
        if scores is not None:
            out = out.merge(scores, on="id", how="left", validate="one_to_one")
    out.attrs["dataset"] = name
    out.attrs["catalog_hash"] = ds.meta["catalog_hash"]
    if status.get("votes", {}).get("complete"):    # FER+: the labels are the crowd's majority (recipe defaults)
        vm = json.loads((family_dir(ds, "votes") / "meta.json").read_text())
        out.attrs["labels_are_votes"] = bool(vm.get("labels_are_votes")) and vm.get("source") == name
    # which signal tables these columns came from (decision records compare it; no second look at the disk)
    out.attrs["signal_stamp"] = {f: s.get("finished") for f, s in status.items() if s["complete"]}
    return out
