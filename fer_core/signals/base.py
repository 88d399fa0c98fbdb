"""The signal-family contract (:class:`SignalFamily`), its registry, column metadata and the batch every
per-image family's ``compute`` receives."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

WORK_SIZE = 48  # quality metrics are computed on images resized to this square (FER2013's native size)


@dataclass(frozen=True)
class SignalColumn:
    name: str
    family: str
    title: str
    description: str
    direction: str          # "low" = low is bad, "high" = high is bad, "both" = outside a range is bad, "none"
    unit: str = ""
    transform: str = "linear"   # "log": defaults and histograms work on log values (skewed signals)
    filterable: bool = True     # a recipe can threshold it
    default_enabled: bool = True
    k: float = 4.0              # robust cut at median ± k·MAD (on the transformed scale)
    review_k: float | None = None  # if set: a second, milder cut that only sends images to review
    review_only: bool = False   # default recipe sends to review but rejects nothing on this signal
    # "percentile" defaults (for bounded, confidence-like scores whose bulk is too tight for MAD): the cut is
    # the q-th percentile of the data, but never above the cap (a clean dataset is not forced to flag q%)
    default_rule: str = "mad"
    review_q: float = 1.0
    reject_q: float = 0.3
    review_cap: float | None = None
    reject_cap: float | None = None
    lower_bound: float | None = None  # values are never below this (e.g. 0)
    upper_bound: float | None = None

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass
class ImageBatch:
    """Decoded images of one batch. ``gray`` is (n, WORK_SIZE, WORK_SIZE) uint8; rows with
    ``ok == False`` could not be read (``errors`` says why) and hold zeros."""

    ids: list[str]
    gray: np.ndarray
    ok: np.ndarray
    errors: list[str]
    pixel_hash: np.ndarray        # uint64 hash of the decoded pixels at full size (exact duplicates)
    width: np.ndarray
    height: np.ndarray
    extra: dict = field(default_factory=dict)


# ---- the contract every signal family keeps --------------------------------------------------------------

_HOOKS = ("available", "compute", "finalize", "upgrade")


class SignalFamily:
    """One family of signals: the columns it adds to every image, how it computes them, what else it needs.

    Subclass it once per family module and add one line to :data:`FAMILY_CLASSES`; the scan, the store, the
    recipe defaults, the pages and the contract test (``tests/test_signals.py``) take everything from here.
    Two kinds:

    - **per-image** (``per_image = True``): the image scan decodes each image once and hands every family that
      still misses it an :class:`ImageBatch`; :meth:`compute` returns one array per column. A family that needs
      all rows at once (duplicate pairs, nearest neighbours) also names its ``derived`` tables and builds them
      in :meth:`finalize` when the scan completes.
    - **whole-table** (``per_image = False``): computed by a job of its own over the whole dataset (label folds,
      crowd votes) and stored with :func:`fer_core.store.write_family_table`; it has no :meth:`compute`.

    Everything is declared and defaulted here, and checked when a subclass is defined (a missing name, a
    column of another family, a misspelt hook such as ``finalise`` fail at import, not halfway into a scan)."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 0              # bump when the code changes: only this family is recomputed
    columns: ClassVar[tuple[SignalColumn, ...]] = ()
    per_image: ClassVar[bool] = True
    depends: ClassVar[tuple[str, ...]] = ()  # families scanned before this one
    extra_columns: ClassVar[dict[str, tuple[str, ...]]] = {}   # {family: columns} handed over in batch.extra
    batch_size: ClassVar[int | None] = None  # smaller batches for heavy models (progress, memory)
    load_exclude: ClassVar[tuple[str, ...]] = ()   # stored but not loaded with the signals (thumbnails, blobs)
    derived: ClassVar[tuple[str, ...]] = ()  # whole-dataset tables finalize() writes (<key>.parquet)
    error_column: ClassVar[str | None] = None   # says why an image could not be read; such rows are retried
    model: ClassVar[str | None] = None       # a model of fer_core.models this family needs
    made_by: ClassVar[str] = ""              # whole-table families: the command that computes them ({name}: dataset)

    def available(self) -> tuple[bool, str]:
        """Whether this machine can compute the family, and if not, why (the model or a package missing)."""
        if self.model:
            from fer_core.models import available
            return available(self.model)
        return True, ""

    def compute(self, batch: ImageBatch) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{self.name} is not computed by the image scan")

    def finalize(self, table: pd.DataFrame, catalog: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Whole-dataset tables from the complete ``table`` (``catalog``: id, split, label), keyed as ``derived``."""
        return {}

    def upgrade(self, table: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
        """A stored table as read, plus columns added to the family since it was written that can be derived from
        what it stores (no recompute, so no version bump). ``catalog``: id, split, label. Default: as read."""
        return table

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        bad = []
        if not isinstance(cls.name, str) or not cls.name.isidentifier():
            bad.append("`name` must be set to an identifier")
        if not isinstance(cls.version, int) or cls.version < 1:
            bad.append("`version` must be an int ≥ 1")
        cols = cls.columns
        if not cols or not all(isinstance(c, SignalColumn) for c in cols):
            bad.append("`columns` must list its SignalColumn(s)")
        else:
            bad += [f"column '{c.name}' says family '{c.family}'" for c in cols if c.family != cls.name]
            names = [c.name for c in cols]
            bad += [f"column '{n}' twice" for n in sorted({n for n in names if names.count(n) > 1})]
        own = {k for k, v in vars(cls).items() if callable(v) and not k.startswith("_")}
        bad += [f"'{k}' is not a hook of SignalFamily ({', '.join(_HOOKS)})" for k in sorted(own - set(_HOOKS) - {"column_names"})]
        computes = cls.compute is not SignalFamily.compute
        if cls.per_image and not computes:
            bad.append("a per-image family defines compute(batch)")
        if not cls.per_image and (computes or cls.derived or cls.depends or cls.extra_columns):
            bad.append("a whole-table family has no compute, derived tables, depends or extra columns")
        if not cls.per_image and not cls.made_by:
            bad.append("a whole-table family says what computes it (`made_by`)")
        if bool(cls.derived) != (cls.finalize is not SignalFamily.finalize):
            bad.append("`derived` names the tables finalize() writes: both or neither")
        if cls.error_column is not None and cls.error_column not in {c.name for c in cols}:
            bad.append(f"error_column '{cls.error_column}' is not one of its columns")
        if bad:
            raise TypeError(f"signal family {cls.__name__}: " + "; ".join(bad))


# The registry: one line per family, in scan order ("module:Class"; imported on first use, so the app starts
# without loading TensorFlow or onnxruntime). Explicit on purpose: a stray module never becomes a family.
FAMILY_CLASSES = {
    "quality": "fer_core.signals.quality:Quality",
    "duplicates": "fer_core.signals.duplicates:Duplicates",
    "faces": "fer_core.signals.faces:Faces",
    "embeddings": "fer_core.signals.embeddings:Embeddings",
    "faces_mtcnn": "fer_core.signals.faces_mtcnn:FacesMtcnn",
    "labels": "fer_core.signals.labels:Labels",
    "votes": "fer_core.signals.votes:Votes",
}


@functools.cache
def get_family(name: str) -> SignalFamily:
    try:
        module, cls = FAMILY_CLASSES[name].split(":")
    except KeyError:
        from fer_core.errors import InvalidInput
        raise InvalidInput(f"Unknown signal family '{name}'.", "Known: " + ", ".join(FAMILY_CLASSES)) from None
    fam = getattr(importlib.import_module(module), cls)()
    if fam.name != name:
        raise TypeError(f"FAMILY_CLASSES['{name}'] names family '{fam.name}'")
    return fam


def families(names=None) -> list[SignalFamily]:
    return [get_family(n) for n in (names or FAMILY_CLASSES)]


@functools.cache
def _all_columns() -> dict[str, SignalColumn]:
    return {c.name: c for fam in families() for c in fam.columns}


class _Columns(Mapping):
    """Every family's columns by name, read from the registry on first use (importing this module loads no
    family)."""

    def __getitem__(self, k):
        return _all_columns()[k]

    def __iter__(self):
        return iter(_all_columns())

    def __len__(self):
        return len(_all_columns())


COLUMN_META: Mapping[str, SignalColumn] = _Columns()


def column_meta(name: str) -> SignalColumn:
    return COLUMN_META[name]
