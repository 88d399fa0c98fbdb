"""Crowd votes as a signal table: the FER+ import's own votes, and what a set of votes says about a given label.

The ``votes`` family (:mod:`fer_core.signals.votes`) is written here for a FER+ import (its images' own votes,
right after the import) and by :mod:`fer_core.links` for a dataset linked to one. Also: how well a ranking of
suspected label errors finds the crowd's disagreements (precision at k)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fer_core import datasets, store
from fer_core.errors import DatasetError
from fer_core.signals.votes import NOT_AN_EXPRESSION
from fer_core.sources import ferplus

VOTE_COLS = [f"votes_{c}" for c in ferplus.VOTE_COLUMNS]
_LABEL_VOTE = {lab: f"votes_{col}" for col, lab in ferplus.EXPRESSION.items()}   # taxonomy label -> its column


def table_for(ids: np.ndarray, labels: np.ndarray, votes: pd.DataFrame | None, source: str) -> pd.DataFrame:
    """The family table for ``ids`` (given labels ``labels``); ``votes`` holds ``id`` + the ten vote columns for
    the images that have votes (others get 0 votes and an empty crowd label)."""
    out = pd.DataFrame({"id": ids})
    if votes is not None and len(votes):
        out = out.merge(votes[["id"] + VOTE_COLS], on="id", how="left", validate="one_to_one")
    for c in VOTE_COLS:
        out[c] = out[c].fillna(0).astype(np.int16) if c in out else np.zeros(len(out), np.int16)
    v = out[VOTE_COLS]
    summ = ferplus.summarize(v)
    has = summ["crowd_votes"].to_numpy() > 0
    out["crowd_label"] = np.where(has, summ["crowd_label"].to_numpy(), "")
    out["crowd_share"] = np.where(has, summ["crowd_share"].to_numpy(), np.nan)
    out["crowd_votes"] = summ["crowd_votes"].to_numpy().astype(np.int16)
    given = np.zeros(len(out), np.int16)
    lab = np.asarray(labels, dtype=object)
    for name, col in _LABEL_VOTE.items():
        m = lab == name
        given[m] = out.loc[m, col].to_numpy()
    out["crowd_given"] = np.where(has, given, -1).astype(np.int16)
    out["crowd_source"] = np.where(has, source, "")
    return out


def write_own_votes(ds: datasets.Dataset) -> dict:
    """The FER+ import's hook: every catalog image's votes from its folder's ``label.csv``."""
    votes, problems = ferplus.read_votes(ds.images)
    cat = ds.catalog
    votes = votes.merge(cat[["id", "path"]], on="path", how="inner")
    table = table_for(cat["id"].to_numpy(), cat["label"].to_numpy(), votes, ds.name)
    store.write_family_table(ds, "votes", table, {"source": ds.name, "source_catalog_hash": ds.meta["catalog_hash"],
                                                  "labels_are_votes": True})
    return {"images": int(len(table)), "with_votes": int((table["crowd_votes"] > 0).sum()), "problems": len(problems)}


def write_csv_votes(ds: datasets.Dataset) -> dict | None:
    """The fer2013.csv import's hook: FER+'s ``fer2013new.csv`` (``Usage, Image name, <ten votes>`` for every row
    of the original, in the same order; an empty image name = a row FER+ dropped) gives each materialised row
    (``<Usage>_<line>.png``) its votes. The labels stay FER2013's own. Bad rows are counted, never raised."""
    src = ds.images / "fer2013new.csv"
    if not src.is_file():
        return None
    lines = src.read_text(errors="replace").splitlines()
    rows, bad = {}, 0
    for n, line in enumerate(lines, start=1):
        parts = [p.strip() for p in line.split(",")]
        if n == 1 and parts and parts[0].lower() == "usage":
            continue
        if len(parts) != 2 + len(ferplus.VOTE_COLUMNS):
            bad += 1
            continue
        try:
            v = [int(x) for x in parts[2:]]
        except ValueError:
            bad += 1
            continue
        if parts[1] and min(v) >= 0 and sum(v) > 0:     # an empty image name: FER+ dropped the row
            rows[n] = v
    cat = ds.catalog
    line_of = cat["path"].str.extract(r"_(\d+)\.png$", expand=False).astype("Int64")
    have = line_of.isin(list(rows)).fillna(False).to_numpy(bool)
    votes = pd.DataFrame([rows[int(x)] for x in line_of[have]], columns=VOTE_COLS)
    votes.insert(0, "id", cat["id"].to_numpy()[have])
    table = table_for(cat["id"].to_numpy(), cat["label"].to_numpy(), votes, ds.name)
    store.write_family_table(ds, "votes", table, {"source": ds.name, "source_catalog_hash": ds.meta["catalog_hash"],
                                                  "labels_are_votes": False, "bad_rows": bad})
    return {"with_votes": int(have.sum()), "bad_rows": bad}


def usable(signals: pd.DataFrame) -> np.ndarray:
    """Images whose crowd majority is an expression (votes present, not a tie / unknown / not-a-face)."""
    if "crowd_label" not in signals:
        return np.zeros(len(signals), bool)
    cl = signals["crowd_label"].fillna("").to_numpy()
    return (cl != "") & ~np.isin(cl, NOT_AN_EXPRESSION)


def precision_at(rank: np.ndarray, disagree: np.ndarray, ks=(500, 1000, 2000)) -> dict[int, float | None]:
    """Share of the ``k`` best-ranked images (rank 1 = most suspect; NaN = unranked) where the crowd disagrees."""
    rank = np.asarray(rank, float)
    ok = ~np.isnan(rank)
    order = np.flatnonzero(ok)[np.argsort(rank[ok], kind="stable")]
    return {k: (float(disagree[order[:k]].mean()) if len(order) >= k else None) for k in ks}


def label_issue_precision(signals: pd.DataFrame, by: str = "label_rank") -> dict | None:
    """How well a label-issue ranking finds the crowd's disagreements — ``by``: ``label_rank`` (1 = most suspect)
    or a label signal whose low values are suspect (``label_quality``, ``label_margin``) — on the training images
    that have usable votes: precision at 500 / 1,000 / 2,000 for "the given label got 0 of 10 votes" and for
    "the given label is not the crowd majority", with each rate over all those images as the baseline; and, where
    the model suggested a label, how often the suggestion is the crowd's majority among the same top images
    against how often the given label is (``suggestion_right``, ``given_right``): relabelling the top k to the
    suggestion brings the labels nearer the crowd only where the first is higher (on FER2013, only in the top ~5%:
    bench/RESULTS.md, issue 17)."""
    if by not in signals or "crowd_label" not in signals:
        return None
    m = usable(signals) & (signals["split"].to_numpy() == "train") & signals[by].notna().to_numpy()
    if not m.any():
        return None
    s = signals[m]
    zero = s["crowd_given"].to_numpy() == 0
    notmaj = s["crowd_label"].to_numpy() != s["label"].to_numpy()
    rank = s[by].to_numpy()                     # low first: a rank, or a score where low is suspect
    out = {"by": by, "images": int(m.sum()),
           "zero_votes": {"base_rate": float(zero.mean()), "precision": precision_at(rank, zero)},
           "not_majority": {"base_rate": float(notmaj.mean()), "precision": precision_at(rank, notmaj)}}
    if "suggested_label" in s:
        sugg = s["suggested_label"].to_numpy() == s["crowd_label"].to_numpy()
        out["suggestion_right"] = {"base_rate": float(sugg.mean()), "precision": precision_at(rank, sugg)}
        out["given_right"] = {"base_rate": float((~notmaj).mean()), "precision": precision_at(rank, ~notmaj)}
    return out


def votes_text(row) -> str:
    """One line for a person: "crowd (ferplus, 10 votes): happy 7 · neutral 2 · unknown 1 — majority happy (70%)";
    "" when the image has no votes. ``row``: a signals row (mapping) with the votes columns."""
    n = int(row.get("crowd_votes", 0) or 0) if hasattr(row, "get") else 0
    if n <= 0:
        return ""
    parts = []
    for col, lab in list(ferplus.EXPRESSION.items()) + list(ferplus.NOT_A_LABEL.items()):
        v = int(row.get(f"votes_{col}", 0) or 0)
        if v:
            parts.append((v, lab))
    parts.sort(key=lambda t: -t[0])
    cl = row.get("crowd_label", "")
    head = f"majority **{cl}** ({float(row.get('crowd_share', 0)):.0%})" if cl not in NOT_AN_EXPRESSION else \
        f"no single expression (**{cl}**)"
    given = int(row.get("crowd_given", -1))
    return (f"crowd ({row.get('crowd_source', '?')}, {n} votes): " + " · ".join(f"{lab} {v}" for v, lab in parts)
            + f" — {head}" + (f"; the given label got {given} of {n}" if given >= 0 else ""))


def own_votes(name: str, cache=None) -> pd.DataFrame | None:
    """The votes table when the dataset's labels are its own crowd votes (FER+), else None."""
    ds = datasets.load(name, cache)
    st = store.family_status(name, cache).get("votes", {})
    if not st.get("complete"):
        return None
    meta = json.loads((store.family_dir(ds, "votes") / "meta.json").read_text())
    if meta.get("source") != name or not meta.get("labels_are_votes"):
        return None
    return store.load_family(ds, "votes")


def crowd_unsure_ids(name: str, cache=None) -> set:
    """Ids whose labels are crowd votes that give no single expression (empty for other datasets). A FER+ import
    whose votes are not current is refused: its ties would be scored under their fallback label."""
    v = own_votes(name, cache)
    if v is None:
        if datasets.load(name, cache).spec.name == "ferplus":
            raise DatasetError(f"The crowd votes of '{name}' are not stored as current (its labels are those votes).",
                               f"Import it again (`python -m fer_core import … --name {name}`): the import writes them.")
        return set()
    return set(v.loc[v["crowd_label"].isin(NOT_AN_EXPRESSION), "id"])
