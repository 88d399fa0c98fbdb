"""Signal metadata and the batch every family's ``compute`` receives."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

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


FAMILY_MODULES = {
    "quality": "fer_core.signals.quality",
    "duplicates": "fer_core.signals.duplicates",
    "faces": "fer_core.signals.faces",
    "embeddings": "fer_core.signals.embeddings",
    "faces_mtcnn": "fer_core.signals.faces_mtcnn",
    "labels": "fer_core.signals.labels",
}


def get_family(name: str):
    try:
        return importlib.import_module(FAMILY_MODULES[name])
    except KeyError:
        from fer_core.errors import InvalidInput
        raise InvalidInput(f"Unknown signal family '{name}'.", "Known: " + ", ".join(FAMILY_MODULES)) from None


def families(names=None) -> list:
    return [get_family(n) for n in (names or FAMILY_MODULES)]


def _all_columns() -> dict[str, SignalColumn]:
    out = {}
    for fam in families():
        for c in fam.COLUMNS:
            out[c.name] = c
    return out


class _LazyMeta(dict):
    def _load(self):
        if not super().__len__():
            super().update(_all_columns())

    def __getitem__(self, k):
        self._load()
        return super().__getitem__(k)

    def __iter__(self):
        self._load()
        return super().__iter__()

    def __len__(self):
        self._load()
        return super().__len__()

    def get(self, k, d=None):
        self._load()
        return super().get(k, d)

    def items(self):
        self._load()
        return super().items()

    def values(self):
        self._load()
        return super().values()

    def keys(self):
        self._load()
        return super().keys()

    def __contains__(self, k):
        self._load()
        return super().__contains__(k)


COLUMN_META: dict[str, SignalColumn] = _LazyMeta()


def column_meta(name: str) -> SignalColumn:
    return COLUMN_META[name]
