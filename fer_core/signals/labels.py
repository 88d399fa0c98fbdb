"""Label-error signals: written by ``python -m fer_core labels NAME`` (K-fold out-of-fold probabilities
turned into per-image scores by cleanlab), not by the image scan. Stored like every other family
(``signals/labels/v<VERSION>/table.parquet`` + ``meta.json``) so recipes, histograms and review queues
use them the same way. Training images only; val/test rows are empty (NaN)."""

from __future__ import annotations

from fer_core.signals.base import SignalColumn, SignalFamily

FAMILY = "labels"
VERSION = 1
_F = FAMILY

COLUMNS = [
    SignalColumn("label_quality", _F, "Label quality", "cleanlab self-confidence: the out-of-fold probability "
                 "of the given label (average of the CNN folds and the face-embedding classifier). Low = the label "
                 "is probably wrong.", "low", "probability", lower_bound=0, upper_bound=1,
                 default_rule="percentile", review_q=8.0, reject_q=3.0),
    SignalColumn("label_issue", _F, "Label issue (cleanlab)", "cleanlab's find_label_issues flag (prune by noise "
                 "rate). With a ~56%-accurate model it flags far too many images to drop blindly: the recipe cuts "
                 "on label_quality instead.", "none", filterable=False),
    SignalColumn("suggested_label", _F, "Suggested label", "The most probable label out of fold.", "none",
                 filterable=False),
    SignalColumn("label_rank", _F, "Label issue rank", "1 = most likely mislabelled (ties broken by the margin "
                 "of the suggested label, then by id).", "none", filterable=False),
    SignalColumn("label_top3", _F, "Top-3 probabilities", "The three most probable labels out of fold.", "none",
                 filterable=False),
]


class Labels(SignalFamily):
    """A whole-table family: ``fer_core.train.labels`` computes it and stores it with
    ``store.write_family_table``."""
    name, version, columns = FAMILY, VERSION, tuple(COLUMNS)
    per_image = False
    made_by = "`python -m fer_core labels {name}` (or Find label issues on the Train page)"
