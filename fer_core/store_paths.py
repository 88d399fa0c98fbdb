"""Paths inside the cache, one place for all of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


def _root(cache: str | Path | None, sub: str) -> Path:
    p = cache_root(cache) / sub
    p.mkdir(parents=True, exist_ok=True)
    return p


def downloads_root(cache: str | Path | None = None) -> Path:
    return _root(cache, "downloads")


def jobs_root(cache: str | Path | None = None) -> Path:
    return _root(cache, "jobs")


def collections_root(cache: str | Path | None = None) -> Path:
    """Collection definitions (``<name>.yaml``) and their build records (``<name>.build.json``; fer_core.collections)."""
    return _root(cache, "collections")


def links_root(cache: str | Path | None = None) -> Path:
    """Links between datasets holding the same faces (``<a>__<b>.parquet`` + ``.json``; fer_core.links)."""
    return _root(cache, "links")


def exports_root(cache: str | Path | None = None) -> Path:
    return _root(cache, "exports")


@dataclass(frozen=True)
class DatasetPaths:
    """Every path of one dataset's folder, ``cache/datasets/<name>/``: the one place that names them. The
    imported content is behind ``data`` (a link swapped atomically on re-import); the person's work on the
    dataset (signals, reviews, recipes, runs) lives beside it and survives re-imports."""

    home: Path

    @property
    def data(self) -> Path:          # images/, catalog.parquet, rejected.parquet, dataset.json
        return self.home / "data"

    @property
    def lock(self) -> Path:          # the dataset's writer lock (fer_core.locks)
        return self.home / ".lock"

    @property
    def signals(self) -> Path:
        return self.home / "signals"

    def family(self, family: str, version: int) -> Path:   # signals/<family>/v<version>/
        return self.signals / family / f"v{version}"

    @property
    def recipes(self) -> Path:       # saved recipes (<name>.yaml), the auto-saved draft, run recipes (_runs/)
        return self.home / "recipes"

    @property
    def review_db(self) -> Path:     # manual overrides and their event log (SQLite)
        return self.home / "review.sqlite"

    @property
    def decision_records(self) -> Path:   # kept-image lists of exports and runs (staleness)
        return self.home / "decisions"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def ab(self) -> Path:
        return self.home / "ab"

    @property
    def work(self) -> Path:          # caches derived from the images (decoded pixel arrays)
        return self.home / "work"

    @property
    def split_assignment(self) -> Path:   # train/val/test for a dataset without splits (fer_core.splits)
        return self.home / "split.json"

    @property
    def seen(self) -> Path:          # what the pages last showed the person (change notices)
        return self.home / "seen.json"

    def made(self, path: Path) -> Path:
        """``path`` (one of these folders), created if missing."""
        path.mkdir(parents=True, exist_ok=True)
        return path


def dataset_paths(name: str, cache: str | Path | None = None) -> DatasetPaths:
    return DatasetPaths(dataset_dir(name, cache))
