"""Reader of a built collection (see :mod:`fer_core.collections`): ``<member>/<split>/<label>/<id>.png`` and the
``index.csv`` beside them that says, per image, its member, split, collection label and the member's own label, and
lists what the build left out with the reason (a contempt image dropped by choice, a cross-member copy, a label
outside the taxonomy). ``usage`` is the member, so the catalog counts per source × split × label."""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath
from typing import Iterator

from fer_core.errors import InvalidInput
from fer_core.sources.labels import CANONICAL
from fer_core.sources.readers import Record, classify_file, walk_files

INDEX = "index.csv"
COLUMNS = ("path", "member", "member_id", "split", "label", "label_member", "problem")
SPLITS = ("train", "val", "test")


def read_collection(root: Path, **_) -> Iterator[Record]:
    index = root / INDEX
    if not index.is_file():
        raise InvalidInput("A collection's folder must hold index.csv (written by the collection build).",
                           "Build collections with `python -m fer_core collection build NAME`, not by importing.")
    listed = set()
    with open(index, newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh)
        if tuple(rows.fieldnames or ()) != COLUMNS:
            raise InvalidInput(f"The collection's index.csv has columns {rows.fieldnames}, expected {list(COLUMNS)}.",
                               "Build the collection again: `python -m fer_core collection build NAME`.")
        for n, r in enumerate(rows, 2):
            rel = PurePosixPath(r["path"])
            safe = not rel.is_absolute() and ".." not in rel.parts and len(rel.parts) == 4
            split = r["split"] if r["split"] in SPLITS else "train"
            problem = r["problem"]
            if not safe:
                yield Record(f"{INDEX}:{n}", split, r["member"], r["label_member"], None,
                             f"{INDEX} line {n}: not a path inside the collection")
                continue
            label = r["label"] or None
            if not problem:
                if r["split"] not in SPLITS:
                    problem = f"unknown split '{r['split']}'"
                elif label not in CANONICAL:
                    problem = f"label '{r['label']}' is outside the taxonomy"
                elif not (root / Path(*rel.parts)).is_file():
                    problem = "image missing from the build"
            listed.add(str(rel))
            yield Record(str(rel), split, r["member"], r["label_member"], label if not problem else None, problem)
    for rel in walk_files(root):
        if classify_file(rel) == "image" and str(rel) not in listed:
            yield Record(str(rel), "train", "", "", None, f"not listed in {INDEX}")
