"""Export the kept images as a cleaned dataset: ImageFolder layout, optional fer2013.csv, optional CLAHE.

``cache/exports/<name>/``::

    train|val|test/<label>/<file>      kept images; relabelled images under their new label
    fer2013.csv                        optional: emotion,pixels,Usage (48×48 grey) for FER-style tools
    manifest.json                      source + catalog hash, full recipe, overrides, counts before/after,
                                       reasons, CLAHE settings, app version, time

Safe target: an export only ever replaces an earlier export (its ``manifest.json`` with ``"format":
"fer-export/1"`` and nothing else) or fills a new or empty folder; any other folder is refused, as are the
cache, folders inside it other than ``cache/exports/<name>``, the home folder and their parents. The
dataset's writer lock is held while the export reads it. A full disk is reported as :class:`DiskFull`.

Atomic: everything is written to a temporary folder beside the target, then renamed into place (an
existing export of the same name is replaced only once the new one is complete). A lock makes a second
concurrent export of the same name fail with a clear message; a killed export leaves only a temporary
folder, removed by the next export. Deterministic: the same inputs give byte-identical files and a
byte-identical manifest apart from its ``created`` time stamp; without CLAHE, image files are copied
byte for byte.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
import uuid
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pandas as pd

import fer_core
from fer_core import datasets, decisions as dec_mod, locks, recipe as recipe_mod, review, staleness
from fer_core.config import cache_root
from fer_core.errors import Busy, DiskFull, InvalidInput
from fer_core.locks import dataset_lock
from fer_core.progress import CancelToken, ProgressFn, atomic_write_text, check_cancel, emit
from fer_core.sources.labels import FER2013_IDS
from fer_core.store_paths import check_name, exports_root

USAGE_OF_SPLIT = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
_FER_ID = {v: k for k, v in FER2013_IDS.items()}


@dataclass(frozen=True)
class Clahe:
    clip_limit: float = 2.0
    tile: int = 8

    def apply(self, img: np.ndarray) -> np.ndarray:
        c = cv2.createCLAHE(clipLimit=float(self.clip_limit), tileGridSize=(int(self.tile), int(self.tile)))
        if img.ndim == 2:
            return c.apply(img)
        bgr = img[:, :, :3]
        lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
        lab[:, :, 0] = c.apply(lab[:, :, 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
        return out if img.shape[2] == 3 else np.dstack([out, img[:, :, 3]])


@dataclass
class ExportResult:
    name: str
    path: Path
    manifest: dict
    seconds: float

    def summary(self) -> str:
        m = self.manifest
        return (f"export '{self.name}': {m['counts']['after_total']:,} of {m['counts']['before_total']:,} images "
                f"→ {self.path} ({self.seconds:.1f} s)")


def _counts(df: pd.DataFrame, label_col: str) -> dict:
    t = pd.crosstab(df["split"], df[label_col])
    return {s: {l: int(t.loc[s, l]) for l in t.columns if t.loc[s, l]} for s in t.index}


def _target_names(sel: pd.DataFrame, clahe: Clahe | None) -> list[str]:
    """Relative output paths: split/label/<original file name>, made unique with the image id if needed."""
    base = sel["path"].str.rsplit("/", n=1).str[-1]
    if clahe is not None:
        base = base.str.replace(r"\.[^.]+$", "", regex=True) + ".png"
    rel = sel["split"] + "/" + sel["label_final"] + "/" + base
    dup = rel.duplicated(keep=False)
    if dup.any():
        stem = base.str.replace(r"\.[^.]+$", "", regex=True)
        ext = base.str.extract(r"(\.[^.]+)$")[0].fillna("")
        rel[dup] = (sel["split"] + "/" + sel["label_final"] + "/" + stem + "_" + sel["id"] + ext)[dup]
    return rel.tolist()


def _fer_row(img: np.ndarray) -> str:
    g = img if img.ndim == 2 else cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)
    if g.shape != (48, 48):
        g = cv2.resize(g, (48, 48), interpolation=cv2.INTER_AREA)
    return " ".join(map(str, g.ravel().tolist()))


_EXPORT_ENTRIES = {"manifest.json", "fer2013.csv", *USAGE_OF_SPLIT}


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def check_target(root: str | os.PathLike, cache=None) -> Path:
    """The resolved export folder; refused unless it is new, empty or holds an earlier export (and only that).

    Never the cache, a folder inside it other than ``cache/exports/<name>``, the home folder, or a parent of
    any of these (``/`` included): an export replaces its target folder.
    """
    root = Path(os.path.realpath(Path(root).expanduser()))
    cache_dir = Path(os.path.realpath(cache_root(cache)))
    exports = Path(os.path.realpath(exports_root(cache)))
    pick = "Choose a new or empty folder for the export (or leave out --out to export under the cache's exports/)."
    for what, p in (("the app's cache", cache_dir), ("your home folder", Path(os.path.realpath(Path.home())))):
        if _within(p, root):
            raise InvalidInput(f"Cannot export to '{root}': it {'is' if p == root else 'contains'} {what} ({p}), "
                               "and an export replaces its target folder.", pick)
    if _within(root, cache_dir) and root.parent != exports:   # cache/exports/<name>, never inside another export
        raise InvalidInput(f"Cannot export to '{root}': it is inside the app's cache ({cache_dir}), where exports "
                           f"may only go under {exports}.", pick)
    if root.exists():
        if not root.is_dir():
            raise InvalidInput(f"Cannot export to '{root}': it is a file, not a folder.", pick)
        entries = sorted(p.name for p in root.iterdir())
        if entries and not _is_export(root):
            raise InvalidInput(f"Cannot export to '{root}': the folder is not empty ({', '.join(entries[:3])}"
                               f"{', …' if len(entries) > 3 else ''}) and is not an earlier export, so exporting "
                               "would delete what it holds.",
                               "Choose a new or empty folder, or move its contents away first. An export only ever "
                               "replaces an earlier export (a folder with its manifest.json and nothing else).")
    return root


def _is_export(root: Path) -> bool:
    """True for a folder written by :func:`export`: its manifest, and nothing but what an export writes."""
    try:
        ok = json.loads((root / "manifest.json").read_text()).get("format") == "fer-export/1"
    except (OSError, ValueError, AttributeError):
        return False
    return ok and {p.name for p in root.iterdir()} <= _EXPORT_ENTRIES


def export(name: str, rec: recipe_mod.Recipe, export_name: str, clahe: Clahe | None = None, csv: bool = False,
           use_overrides: bool = True, out_dir: str | os.PathLike | None = None, replace: bool = True,
           progress: ProgressFn | None = None, cancel: CancelToken | None = None, cache=None,
           now: float | None = None) -> ExportResult:
    t0 = time.time()
    root = check_target(out_dir if out_dir else exports_root(cache) / check_name(export_name, "export"), cache)
    if not replace and root.exists() and any(root.iterdir()):
        raise InvalidInput(f"'{root}' already exists.", "Choose another name or allow replacing it.")
    datasets.load(name, cache)  # a clear error for an unknown dataset before taking its lock
    with _target_lock(root), dataset_lock(name, "export", cache=cache, progress=progress, cancel=cancel):
        check_target(root, cache)  # again, under the locks
        ds = datasets.load(name, cache)
        from fer_core import collections

        collections.originals(ds, cache)   # a stale collection is refused before anything else is asked
        inputs = dec_mod.load_inputs(name, cache)
        overrides = review.store_for(ds).overrides() if use_overrides else None
        dec_mod.check_crowd(inputs, rec, cache)
        dec = dec_mod.run(inputs, rec, overrides)
        manifest = _export_to(root, ds, inputs.signals, dec, rec, clahe, csv, overrides, progress, cancel, now, cache)
    return ExportResult(export_name, root, manifest, time.time() - t0)


@contextmanager
def _target_lock(root: Path):
    """A second export to the same folder fails at once (taken before the dataset lock, never waits)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(locks.file_lock(root.parent / f".{root.name}.lock", wait=False))
        except BlockingIOError as exc:
            raise Busy(f"Another export to '{root}' is running.", "Wait for it to finish, or export under another name.") from exc
        yield


def _export_to(root: Path, ds, sig, dec, rec, clahe, csv, overrides, progress, cancel, now, cache) -> dict:
    """Write into a temporary folder beside ``root``, then swap it in (the caller holds the target's lock)."""
    parent = root.parent
    for old in parent.glob(f".{root.name}.tmp-????????"):
        shutil.rmtree(old, ignore_errors=True)  # left by a killed export (we hold the lock)
    tmp = parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        manifest = _write(ds, sig, dec, rec, tmp, clahe, csv, overrides, progress, cancel, now)
        if root.exists():
            check_target(root, cache)  # nothing but an earlier export (or nothing) is ever replaced
            trash = parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(root, trash)
            os.rename(tmp, root)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, root)
        return manifest
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        raise DiskFull(f"The disk filled up while exporting to '{root}' ({_gib(shutil.disk_usage(parent).free)} "
                       "free now); nothing there was changed (an earlier export is intact) and no partial "
                       "export was left.", f"Free space on the disk holding {parent} and export again.") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write(ds, sig, dec, rec, tmp: Path, clahe, csv, overrides, progress, cancel, now) -> dict:
    full = sig[["id", "path", "split", "usage", "label"]].copy()
    full["label_final"] = dec["label_final"].to_numpy()
    full["keep"] = dec["keep"].to_numpy()
    sel = full[full["keep"]].sort_values(["split", "label_final", "path"]).reset_index(drop=True)
    rel = _target_names(sel, clahe)
    from fer_core import collections

    # a collection holds the model's 48×48 input; its export keeps the members' original files (their format)
    orig = collections.originals(ds, ds.home.parent.parent)
    if orig:
        rel = [str(PurePosixPath(r).with_suffix(orig[p].suffix.lower())) if p in orig and clahe is None else r
               for r, p in zip(rel, sel["path"])]
    total = len(sel)
    emit(progress, "export", 0, total, "images")
    rows_csv = []
    skipped_csv = 0
    made = set()
    for i, (src_rel, out_rel, split, lab) in enumerate(zip(sel["path"], rel, sel["split"], sel["label_final"])):
        if i % 500 == 0:
            check_cancel(cancel)
            emit(progress, "export", i, total, "images")
        dst = tmp / out_rel
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        src = orig.get(src_rel, ds.image_path(src_rel)) if orig else ds.image_path(src_rel)
        img = None
        if clahe is not None:
            img = cv2.imdecode(np.fromfile(src, np.uint8), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise InvalidInput(f"Cannot decode {src_rel} while exporting.", "Re-import the dataset.")
            out = clahe.apply(img)
            ok, buf = cv2.imencode(".png", out)
            dst.write_bytes(buf.tobytes())
            img = out
        else:
            shutil.copyfile(src, dst)
        if csv:
            if lab not in _FER_ID:
                skipped_csv += 1
                continue
            if img is None:
                img = cv2.imdecode(np.fromfile(dst, np.uint8), cv2.IMREAD_UNCHANGED)
            rows_csv.append(f"{_FER_ID[lab]},{_fer_row(img)},{USAGE_OF_SPLIT[split]}")
    emit(progress, "export", total, total, "images")
    if csv:
        atomic_write_text(tmp / "fer2013.csv", "emotion,pixels,Usage\n" + "".join(r + "\n" for r in rows_csv))
    summary = recipe_mod.summarize(sig, dec)
    files_hash = hashlib.blake2b(digest_size=16)
    for out_rel in sorted(rel):
        files_hash.update(out_rel.encode() + b"\0" + hashlib.blake2b((tmp / out_rel).read_bytes(), digest_size=16).digest())
    n_over = 0 if overrides is None else len(overrides)
    relabels = int(((dec["override"] == "relabel") & dec["in_scope"] & dec["keep"]).sum())
    auto = int((dec["auto_relabel"] & dec["keep"]).sum()) if "auto_relabel" in dec else 0
    manifest = {
        "format": "fer-export/1",
        "source": {"dataset": ds.name, "catalog_hash": ds.meta["catalog_hash"], "spec": ds.meta.get("spec"),
                   "origin": ds.meta.get("source")},
        "recipe": rec.to_dict(),
        "recipe_fingerprint": rec.fingerprint(),
        "decisions": staleness.record(ds, sig, dec, rec),   # what the export was made on (staleness)
        "overrides": {"count": n_over, "relabels_applied": relabels, "policy_relabels": auto,
                      "rejects_applied": int(recipe_mod.has_reason(dec["reasons"], "manual").sum()),
                      "keeps_applied": int(((dec["override"] == "keep") & dec["in_scope"]).sum())},
        "counts": {"before": _counts(full, "label"), "after": _counts(sel, "label_final"),
                   "before_total": int(len(full)), "after_total": int(len(sel))},
        "reasons": summary["by_reason"],
        "crowd": summary.get("crowd"),     # crowd votes (FER+ or a link): images relabelled to the crowd, set aside
        "leakage": {"eval_images_with_train_copy": summary["eval_leaked"],
                    "train_copies_flagged": summary["train_leak_copies"]},
        "clahe": asdict(clahe) if clahe else None,
        "fer2013_csv": {"written": bool(csv), "rows": len(rows_csv), "skipped_unmappable_labels": skipped_csv} if csv else None,
        "layout": "split/label/file (ImageFolder)",
        "files": {"count": len(rel), "content_hash": files_hash.hexdigest()},
        "app_version": fer_core.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now if now is not None else time.time())),
    }
    if (block := collections.manifest_block(ds)) is not None:   # a collection: its members, their recipes, counts
        block["images"] = ("the members' original files" if orig else "the collection's 48×48 images")
        manifest["collection"] = block
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def list_exports(cache=None) -> list[dict]:
    out = []
    for d in sorted(exports_root(cache).iterdir()):
        if d.is_dir() and not d.name.startswith(".") and (d / "manifest.json").exists():
            m = json.loads((d / "manifest.json").read_text())
            out.append({"name": d.name, "path": d, "manifest": m})
    return out


def zip_export(path: str | os.PathLike) -> Path:
    """A deterministic zip of an export folder (fixed time stamps, sorted names), written atomically."""
    path = Path(path)
    target = path.parent / f"{path.name}.zip"
    tmp = path.parent / f".{path.name}.zip.{uuid.uuid4().hex[:6]}"
    files = sorted(p for p in path.rglob("*") if p.is_file())
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                info = zipfile.ZipInfo(f"{path.name}/{p.relative_to(path).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, p.read_bytes())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFull(f"The disk filled up while zipping '{path.name}' ({_gib(shutil.disk_usage(path.parent).free)} "
                       "free now); the export folder itself is complete.",
                       f"Free space on the disk holding {path.parent} and prepare the zip again.") from exc
    os.replace(tmp, target)
    return target
