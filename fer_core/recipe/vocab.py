"""The recipe's vocabulary: format tag, splits, policies and the reason bits (one bit per filterable signal
column, then the fixed reasons). The floor under the model and the schema."""

from __future__ import annotations

from fer_core.signals.base import COLUMN_META

FORMAT = "fer-recipe/1"
SPLIT_ORDER = ("test", "val", "train")
POLICIES = ("keep_one", "drop_all", "keep_all")

# Reason bits. Filter reasons are named after their signal; the rest are fixed.
# "crowd": the crowd votes do not give one expression (tie, unknown, not a face) or give one the dataset lacks
FIXED_REASONS = ["duplicate", "leak", "manual", "conflict", "crowd"]


# The signal columns that rank label errors (cleanlab scores of the out-of-fold probabilities): a cut on any of
# them is "the label cut" — capped per class (labels.class_cap) and relabelled under the relabel policy. In order of
# preference: the default recipe cuts on the first one enabled by default that the table has (label quality; the
# margin is there to choose: bench/RESULTS.md, 2026-12-01, "the label margin on the CNN").
LABEL_CUTS = ("label_quality", "label_margin")


def filter_columns() -> list[str]:
    return [c.name for c in COLUMN_META.values() if c.filterable and c.direction != "none"]


def reason_names() -> list[str]:
    return filter_columns() + FIXED_REASONS


def reason_bit(name: str) -> int:
    return 1 << reason_names().index(name)


def label_cut_bits() -> int:
    """The reason bits of every label cut (0 where no label family is registered)."""
    names = reason_names()
    return sum(1 << names.index(c) for c in LABEL_CUTS if c in names)


LABEL_POLICIES = ("drop", "relabel")
CROWD_POLICIES = ("off", "relabel")     # relabel: training images take the crowd majority (votes signals)
CROWD_UNSURE = ("keep", "drop")        # images whose votes give no single expression
