"""Paths inside the cache, one place for all of them."""

from __future__ import annotations

import re
from pathlib import Path

from fer_core.config import cache_root
from fer_core.errors import InvalidInput

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def check_name(name: str, kind: str = "dataset") -> str:
    """A name used as a folder or file name (``kind``: dataset, recipe, export or collection). The whole name
    must match: a trailing newline or a path separator never slips through."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInput(f"{name!r} is not a valid {kind} name.",
                           "Use 1–64 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit.")
    return name


def datasets_root(cache: str | Path | None = None) -> Path:
    p = cache_root(cache) / "datasets"
    p.mkdir(parents=True, exist_ok=True)
    return p


def dataset_dir(name: str, cache: str | Path | None = None) -> Path:
    return datasets_root(cache) / check_name(name)


def data_dir(name: str, cache: str | Path | None = None) -> Path:
    """The imported content (images/, catalog.parquet, rejected.parquet, dataset.json)."""
    return dataset_dir(name, cache) / "data"


def downloads_root(cache: str | Path | None = None) -> Path:
    p = cache_root(cache) / "downloads"
    p.mkdir(parents=True, exist_ok=True)
    return p


def jobs_root(cache: str | Path | None = None) -> Path:
    p = cache_root(cache) / "jobs"
    p.mkdir(parents=True, exist_ok=True)
    return p


def exports_root(cache: str | Path | None = None) -> Path:
    p = cache_root(cache) / "exports"
    p.mkdir(parents=True, exist_ok=True)
    return p
