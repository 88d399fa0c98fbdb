"""The dataset store: import (folder, zip, fer2013.csv), atomic registration, loading.

Layout under ``cache/datasets/<name>/``::

    data -> data-<stamp>-<hash>/      symlink, swapped atomically on re-import
        images/...                    the imported files, as they came (CSV rows become PNGs)
        catalog.parquet               one row per usable image (see fer_core.catalog)
        rejected.parquet              files that could not be used, with the reason
        dataset.json                  source, counts, catalog hash, app version, time
    signals/ review.sqlite recipes/   the person's work: never touched by a re-import

A dataset is registered once ``data`` points at a complete directory; a failed or cancelled import
leaves nothing registered (and an earlier good import stays as it was).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

import pandas as pd

import fer_core
from fer_core import catalog as catalog_mod
from fer_core.config import DEFAULT_LIMITS, ImportLimits
from fer_core.errors import DatasetError, DiskFull, FerError, InvalidInput
from fer_core.progress import CancelToken, ProgressFn, atomic_write_json, check_cancel, emit
from fer_core.sources import registry
from fer_core.sources.archive import safe_extract
from fer_core.sources.fer_csv import materialize_csv
from fer_core.store_paths import DatasetPaths, check_name, data_dir, dataset_dir, datasets_root


@dataclass
class Dataset:
    name: str
    root: Path   # the resolved data directory (images, catalog, meta)
    home: Path   # cache/datasets/<name>: the person's work on it lives here (signals, review, recipes)
    meta: dict = field(default_factory=dict)

    @property
    def paths(self) -> DatasetPaths:
        """Every path of this dataset's folder (fer_core.store_paths.DatasetPaths)."""
        return DatasetPaths(self.home)

    @property
    def images(self) -> Path:
        return self.root / "images"

    @cached_property
    def catalog(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "catalog.parquet")

    @cached_property
    def rejected(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "rejected.parquet")

    def image_path(self, rel: str) -> Path:
        return self.images / rel

    @property
    def spec(self) -> registry.DatasetSpec:
        return registry.get_spec(self.meta.get("spec", "folders"))


@dataclass
class ImportResult:
    dataset: Dataset
    changed: bool
    n_images: int
    n_rejected: int
    seconds: float

    def summary(self) -> str:
        state = "imported" if self.changed else "unchanged (identical re-import)"
        return (f"{self.dataset.name}: {self.n_images:,} images {state}, "
                f"{self.n_rejected:,} rejected at import, {self.seconds:.1f} s")


def list_datasets(cache=None) -> list[str]:
    root = datasets_root(cache)
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and (d / "data" / "dataset.json").exists():
            out.append(d.name)
    return out


def exists(name: str, cache=None) -> bool:
    return (data_dir(name, cache) / "dataset.json").exists()


def load(name: str, cache=None) -> Dataset:
    d = data_dir(name, cache)
    meta_path = d / "dataset.json"
    if not meta_path.exists():
        raise DatasetError(f"No dataset named '{name}' is imported.",
                           "Download or import it first (Datasets page, or `python -m fer_core download|import`).")
    real = d.resolve()
    meta = json.loads(meta_path.read_text())
    return Dataset(name, real, dataset_dir(name, cache), meta)


def dataset_lock(name: str, cache=None, what: str = "import", wait: bool = True, progress=None, cancel=None):
    """The dataset's writer lock (see :mod:`fer_core.locks`)."""
    from fer_core import locks

    return locks.dataset_lock(name, what, cache=cache, wait=wait, progress=progress, cancel=cancel)


def _skipped(rel, reason: str) -> dict:
    return {"path": str(rel), "reason": reason, "split": "", "usage": "", "label_orig": ""}


def _pick_files(src: Path, limits: ImportLimits) -> tuple[list[tuple[PurePosixPath, int]], list[dict]]:
    """The images and label files under ``src`` to copy, and the entries left out (with the reason).

    Links are never followed (listed as left out), hidden entries and __MACOSX are skipped as the readers
    skip them, and the walk stops at ``limits.max_members`` entries.
    """
    from fer_core.sources.readers import classify_file, is_label_file

    picked, left_out, seen, total = [], [], 0, 0
    stack = [PurePosixPath()]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(src / rel_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            left_out.append(_skipped(rel_dir, f"folder not readable ({exc.strerror or 'error'})"))
            continue
        for e in entries:
            if e.name.startswith(".") or e.name == "__MACOSX":
                continue
            rel = rel_dir / e.name
            seen += 1
            if seen > limits.max_members:
                raise InvalidInput(f"'{src.name}' holds more than {limits.max_members:,} files and folders.",
                                   "Import a smaller folder, or raise the limit (--max-members) if you trust it.")
            try:
                if e.is_symlink():
                    left_out.append(_skipped(rel, "symbolic link: not followed, not copied"))
                elif e.is_dir(follow_symlinks=False):
                    stack.append(rel)
                elif not e.is_file(follow_symlinks=False):
                    left_out.append(_skipped(rel, "not a regular file: not copied"))
                elif classify_file(rel) == "image" or is_label_file(rel):
                    size = e.stat(follow_symlinks=False).st_size
                    picked.append((rel, size))
                    total += size
                elif classify_file(rel) == "other":
                    left_out.append(_skipped(rel, f"not an image or label file (extension "
                                                  f"'{rel.suffix or '(none)'}'): not copied"))
                # other metadata (README.md, notes.pdf, …) is not needed by any reader: not copied, not a problem
            except OSError as exc:  # vanished or unreadable while we looked
                left_out.append(_skipped(rel, f"cannot read ({exc.strerror or 'error'})"))
    if total > limits.max_uncompressed_bytes:
        raise InvalidInput(
            f"The images and label files in '{src.name}' total {total / 2**30:,.2f} GiB "
            f"(limit {limits.max_uncompressed_bytes / 2**30:,.2f} GiB).",
            "Import a smaller folder, or raise the limit (--max-gib) if you trust it.")
    return sorted(picked), sorted(left_out, key=lambda r: r["path"])


def _copy_tree(src: Path, dst: Path, limits: ImportLimits, progress: ProgressFn | None,
               cancel: CancelToken | None, on_file=None) -> list[dict]:
    """Copy the images and label files under ``src`` into ``dst``; return the entries left out.

    Nothing else is copied (no keys, no configs), links are never followed (also not one swapped in
    after the walk: O_NOFOLLOW), and the total stays within the import limits as the bytes are read.
    """
    files, left_out = _pick_files(src, limits)
    emit(progress, "copy", 0, len(files), "files")
    copied = 0
    for n, (rel, _) in enumerate(files, 1):
        out = dst / Path(*rel.parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(src / Path(*rel.parts), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            why = "symbolic link: not followed" if exc.errno == errno.ELOOP else exc.strerror or "error"
            left_out.append(_skipped(rel, f"cannot read ({why}): not copied"))
            continue
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                left_out.append(_skipped(rel, "not a regular file: not copied"))
                continue
            parts, size = [], 0
            with open(out, "xb") as fo:
                while buf := fh.read(1 << 20):
                    size += len(buf)
                    copied += len(buf)
                    if copied > limits.max_uncompressed_bytes:
                        raise InvalidInput(
                            f"The files in '{src.name}' grew past the limit "
                            f"({limits.max_uncompressed_bytes / 2**30:,.2f} GiB) while being copied.",
                            "Import the folder once it no longer changes, or raise the limit (--max-gib).")
                    fo.write(buf)
                    if on_file is not None and size <= (64 << 20):
                        parts.append(buf)
            if on_file is not None and size <= (64 << 20):
                on_file(str(rel), b"".join(parts))
        if n % 1000 == 0:
            check_cancel(cancel)
            emit(progress, "copy", n, len(files), "files")
    emit(progress, "copy", len(files), len(files), "files")
    return left_out


def _has_images(root: Path) -> bool:
    from fer_core.sources.readers import classify_file, walk_files

    return any(classify_file(f) == "image" for f in walk_files(root))


def confine(path: str | os.PathLike, roots: list[Path]) -> Path:
    """``path`` resolved (links followed), when it exists inside one of ``roots``; else InvalidInput.

    The message is the same whether the path is outside the roots or does not exist, so a browser user
    learns nothing about the server's files outside them.
    """
    real = Path(os.path.realpath(Path(path).expanduser()))
    real_roots = [Path(os.path.realpath(r)) for r in roots]
    if not any(real.is_relative_to(r) for r in real_roots) or not real.exists():
        raise InvalidInput(
            f"Cannot import '{path}': it is not a file or folder inside the import folders of this server.",
            "Put the dataset (a folder, a zip or fer2013.csv) under " + " or ".join(f"'{r}'" for r in real_roots)
            + ", or upload it. The operator can add folders with FER_IMPORT_ROOTS.")
    return real


def _source_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suf = path.suffix.lower()
    if path.is_file() and suf == ".zip":
        return "zip"
    if path.is_file() and suf == ".csv":
        return "csv"
    raise InvalidInput(f"Cannot import '{path}': expected a folder, a .zip or a fer2013 .csv file.",
                       "Point to the dataset folder (one sub-folder per label), its zip, or fer2013.csv.")


def import_dataset(source: str | os.PathLike, name: str, spec: str | None = None,
                   limits: ImportLimits = DEFAULT_LIMITS, progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None, source_info: dict | None = None,
                   cache=None, allowed_roots: list[Path] | None = None,
                   reader_options: dict | None = None) -> ImportResult:
    """Import a folder, zip or fer2013.csv as dataset ``name`` (idempotent; atomic).

    ``allowed_roots``: read only inside these folders (what the app passes for a path typed in the
    browser, see :func:`fer_core.config.import_roots`); None (the CLI, the operator) reads any path.
    A folder import copies only images and label files, never follows links, and keeps to ``limits``.
    """
    t0 = time.time()
    check_name(name)
    if allowed_roots is not None:
        source = confine(source, allowed_roots)
    else:
        source = Path(source).expanduser()
        if not source.exists():
            raise InvalidInput(f"'{source}' does not exist.", "Check the path (it is read on the server's disk).")
    kind = _source_kind(source)
    with dataset_lock(name, cache, "import", progress=progress, cancel=cancel):
        ddir = dataset_dir(name, cache)
        for old in ddir.glob(".staging-*"):  # left by a killed import; we hold the lock
            shutil.rmtree(old, ignore_errors=True)
        staging = ddir / f".staging-{uuid.uuid4().hex[:8]}"
        images = staging / "images"
        raw = staging / "raw"
        raw.mkdir(parents=True)
        try:
            extra_rejected: list[dict] = []
            inspector = catalog_mod.Inspector(limits)
            if kind == "folder":
                extra_rejected = _copy_tree(source, raw, limits, progress, cancel, on_file=inspector)
            elif kind == "zip":
                safe_extract(source, raw, limits, progress, cancel, on_file=inspector)
            csv_file = source if kind == "csv" else None
            if csv_file is None and spec in (None, "fer2013-csv") and not _has_images(raw):
                csv_file = registry.find_fer_csv(raw)
            if csv_file is not None:
                images.mkdir()
                extra_rejected += materialize_csv(csv_file, images, progress, cancel)
                spec = "fer2013-csv"
                votes_csv = Path(csv_file).with_name("fer2013new.csv")   # FER+'s votes per row, where they travel
                if votes_csv.is_file():                                  # beside the original (microsoft/FERPlus)
                    shutil.copyfile(votes_csv, images / "fer2013new.csv")
                shutil.rmtree(raw)
            else:
                os.rename(raw, images)
            check_cancel(cancel)
            the_spec = registry.get_spec(spec) if spec else registry.detect_spec(images)
            records = list(the_spec.read(images, progress, cancel, reader_options))
            emit(progress, "import", 0, len(records), "images", message=f"reader: {the_spec.reader}")
            inspected = inspector.results()  # keyed by path relative to raw/ == images/
            cat, rej = catalog_mod.build_catalog(images, records, name, limits, progress, cancel,
                                                 inspected=inspected)
            if extra_rejected:
                rej = pd.concat([rej, pd.DataFrame(extra_rejected, columns=catalog_mod.REJECTED_COLUMNS)],
                                ignore_index=True)
            if cat.empty:
                packed = [p for p in rej["path"] if re.search(r"\.(zip|7z|rar|tar|tgz|gz|\d{3})$", p, re.I)]
                raise InvalidInput(
                    f"No usable images found in '{source.name}' ({len(rej):,} files rejected).",
                    (f"The folder holds archives ({', '.join(packed[:3])}): extract them (e.g. `7z x`) or import "
                     "a zip itself. " if packed else "")
                    + "Expected one sub-folder per label (optionally under train/val/test), a zip of that, "
                    "or fer2013.csv." + (f" First problem: {rej.iloc[0]['path']}: {rej.iloc[0]['reason']}" if len(rej) else ""))
            chash = catalog_mod.catalog_hash(cat)
            meta = {
                "name": name, "spec": the_spec.name, "title": the_spec.title,
                "source": source_info or {"kind": kind, "path": str(source.resolve())},
                "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "app_version": fer_core.__version__,
                "catalog_hash": chash, "n_images": int(len(cat)), "n_rejected": int(len(rej)),
                "splits": {k: int(v) for k, v in cat["split"].value_counts().sort_index().items()},
                "labels": {k: int(v) for k, v in cat["label"].value_counts().sort_index().items()},
                "has_official_split": bool(set(cat["split"]) - {"train"}),
            }
            if reader_options:
                meta["reader_options"] = dict(reader_options)
            cat.to_parquet(staging / "catalog.parquet", index=False)
            rej.to_parquet(staging / "rejected.parquet", index=False)
            atomic_write_json(staging / "dataset.json", meta)
            check_cancel(cancel)
            changed = _commit(ddir, staging, chash, rej)
            ds = load(name, cache)
            after_import(ds, the_spec)
            emit(progress, "import", len(records), len(records), "images", message="done")
            return ImportResult(ds, changed, len(cat), len(rej), time.time() - t0)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull("The disk filled up during the import; nothing was registered.",
                               f"Free space on the disk holding {ddir.parent} and import again.") from exc
            raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


# run after every import, whatever the layout ("module:function"; imported on use: they sit above this module)
AFTER_EVERY_IMPORT = ("fer_core.links:refresh_after_import",)


def after_import(ds: Dataset, spec: registry.DatasetSpec) -> None:
    """What an import of this layout writes besides the catalog (FER+: its crowd votes), then the links to other
    datasets refreshed (a link whose side was re-imported is rebuilt, never left stale). Runs under the import's
    lock, also for an identical re-import (it fills whatever is missing)."""
    import importlib

    for hook in ((spec.after_import,) if spec.after_import else ()) + AFTER_EVERY_IMPORT:
        module, fn = hook.split(":")
        getattr(importlib.import_module(module), fn)(ds)


def _commit(ddir: Path, staging: Path, chash: str, rej: pd.DataFrame) -> bool:
    """Make ``staging`` the dataset's data, atomically. Returns False for an identical re-import."""
    link = ddir / "data"
    if link.exists():
        try:
            old_meta = json.loads((link / "dataset.json").read_text())
            old_rej = pd.read_parquet(link / "rejected.parquet")
            if old_meta.get("catalog_hash") == chash and old_rej["path"].tolist() == rej["path"].tolist():
                return False
        except (OSError, ValueError, KeyError):
            pass
    final = ddir / f"data-{time.strftime('%Y%m%d%H%M%S')}-{chash[:8]}"
    os.rename(staging, final)
    tmp_link = ddir / f".data-link-{uuid.uuid4().hex[:6]}"
    os.symlink(final.name, tmp_link)
    old_target = link.resolve() if link.is_symlink() else None
    os.replace(tmp_link, link)  # atomic switch
    if old_target is not None and old_target != final and old_target.exists():
        shutil.rmtree(old_target, ignore_errors=True)
    return True


def describe_error(exc: BaseException) -> FerError:
    """Wrap any exception into a FerError for display."""
    if isinstance(exc, FerError):
        return exc
    return FerError(f"Unexpected error: {type(exc).__name__}: {exc}",
                    "This is a bug or an environment problem; the log has the details.")

