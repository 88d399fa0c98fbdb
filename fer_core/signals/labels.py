"""Label-error signals: written by ``python -m fer_core labels NAME`` (K-fold out-of-fold probabilities
turned into per-image scores by cleanlab), not by the image scan. Stored like every other family
(``signals/labels/v<VERSION>/table.parquet`` + ``meta.json``) so recipes, histograms and review queues
use them the same way. Training images only; val/test rows are empty (NaN)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fer_core.signals.base import SignalColumn, SignalFamily

FAMILY = "labels"
VERSION = 1
_F = FAMILY

COLUMNS = [
    SignalColumn("label_quality", _F, "Label quality", "cleanlab self-confidence: the out-of-fold probability "
                 "of the given label (average of the CNN folds and the face-embedding classifier). Low = the label "
                 "is probably wrong.", "low", "probability", lower_bound=0, upper_bound=1,
                 default_rule="percentile", review_q=8.0, reject_q=3.0),
    # Another ranking of the same probabilities, off by default. On FER2013 it ranks first the images the model gives
    # to one other class, whose suggestion the FER+ crowd confirms more often (59% against 40% in the top 500), and
    # in the linear probe its 10% cut gained +1.02 points on FER+ Test where self-confidence gained +0.39 — but the
    # CNN trained on that recipe scored 2.9 points *below* raw at seed 0 (the self-confidence recipe +0.57):
    # bench/RESULTS.md, 2026-12-01, "the label margin on the CNN". A choice, not the default, until seeds say more.
    SignalColumn("label_margin", _F, "Label margin", "cleanlab normalized margin: (1 + probability of the given "
                 "label − the largest probability of another label) / 2, out of fold. Below 0.5 the model prefers "
                 "another label; low = the label is probably wrong.", "low", "probability", lower_bound=0,
                 upper_bound=1, default_rule="percentile", review_q=15.0, reject_q=10.0, default_enabled=False),
    SignalColumn("label_issue", _F, "Label issue (cleanlab)", "cleanlab's find_label_issues flag (prune by noise "
                 "rate). With a ~56%-accurate model it flags far too many images to drop blindly: the recipe cuts "
                 "on label_quality instead.", "none", filterable=False),
    SignalColumn("suggested_label", _F, "Suggested label", "The most probable label out of fold.", "none",
                 filterable=False),
    SignalColumn("label_rank", _F, "Label issue rank", "1 = most likely mislabelled by label quality "
                 "(self-confidence; ties broken by the margin of the suggested label, then by id). The review queue "
                 "ranks by the recipe's label cut.", "none", filterable=False),
    SignalColumn("label_top3", _F, "Top-3 probabilities", "The three most probable labels out of fold.", "none",
                 filterable=False),
]


class Labels(SignalFamily):
    """A whole-table family: ``fer_core.train.labels`` computes it and stores it with
    ``store.write_family_table``."""
    name, version, columns = FAMILY, VERSION, tuple(COLUMNS)
    per_image = False
    made_by = "`python -m fer_core labels {name}` (or Find label issues on the Train page)"

    def upgrade(self, table: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
        """Tables written before ``label_margin`` existed get it from their stored fold probabilities."""
        if "label_margin" in table or not any(c.startswith("p_") for c in table.columns):
            return table
        lab = table[["id"]].merge(catalog[["id", "label"]], on="id", how="left")["label"].to_numpy(object)
        return table.assign(label_margin=margin_of(table, lab))


def normalized_margin(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """cleanlab's normalized margin (``get_label_quality_scores(method="normalized_margin")``, a test holds them
    equal): (1 + p[given] − max over the other classes) / 2. In numpy because reading the signals must not import
    cleanlab (2 s)."""
    n = len(given)
    p_given = probs[np.arange(n), given]
    other = probs.copy()
    other[np.arange(n), given] = -np.inf
    return (1 + p_given - other.max(1)) / 2


def margin_of(table: pd.DataFrame, labels: np.ndarray) -> np.ndarray:
    """``label_margin`` from a table's averaged probabilities ``p_<class>`` and the given labels (NaN where an
    image has no probabilities — val/test — or a label outside them)."""
    classes = [c[2:] for c in table.columns if c.startswith("p_")]
    probs = table[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    idx = {c: i for i, c in enumerate(classes)}
    y = np.array([idx.get(l, -1) for l in labels], np.int64)
    ok = (y >= 0) & np.isfinite(probs).all(1)
    out = np.full(len(table), np.nan)
    if ok.any():
        p = np.clip(probs[ok], 1e-6, 1.0)
        out[ok] = normalized_margin(p / p.sum(1, keepdims=True), y[ok])
    return out
