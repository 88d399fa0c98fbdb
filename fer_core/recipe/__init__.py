"""Recipes: thresholds and switches → keep/reject decisions with reasons. Pure, vectorised, instant.

A recipe is a small versioned YAML/JSON document. Its default thresholds come from the dataset's own
distribution (median ± k·MAD on each signal's natural scale, or a 0.5%/99.5% percentile where the
distribution is too concentrated for MAD), never from fixed constants, so FER2013 at 48×48 and a
224×224 dataset both start somewhere sensible.

``decide(signals, recipe, overrides, pairs)`` never touches an image file: it works on the signal table
and the precomputed duplicate candidate pairs, and returns one row per image with ``keep``, a reason
bitmask, the duplicate group and the override applied.

The package, by concern (``from fer_core import recipe`` gives all of it):

- :mod:`.vocab` — format tag, splits, policies, the reason bits;
- :mod:`.model` — the recipe (filters, duplicate and label policies, scope), YAML/JSON I/O;
- :mod:`.schema` — every key, type and range checked, one sentence per problem;
- :mod:`.defaults` — thresholds derived from the data;
- :mod:`.grouping` — candidate pairs → copies, duplicate groups, cross-split leakage;
- :mod:`.decide` — the pipeline of pure steps that turns signals + recipe + overrides into decisions;
- :mod:`.report` — reasons as text, counts, warnings, the funnel.
"""

from fer_core.recipe.decide import (apply_overrides, beyond, cap_label_cut, cap_per_class, crowd_marks, decide,
                                    duplicate_marks, filter_cuts, relabel_candidates)
from fer_core.recipe.defaults import default_recipe, robust_cut
from fer_core.recipe.grouping import (METHOD_CODE, METHOD_NAME, PIXEL_SAME, Pairs, accepted_pairs, copy_pairs,
                                      cross_split_copies, duplicate_groups, exact_classes)
from fer_core.recipe.model import Duplicates, Filter, LabelPolicy, Recipe
from fer_core.recipe.report import (ClassRemoval, class_imbalance, class_removals, format_summary, funnel,
                                    has_reason, imbalance_text, reasons_text, removal_text, split_rejection_text,
                                    split_rejections, summarize)
from fer_core.recipe.schema import (_CUTS, _DuplicatesSchema, _FilterSchema, _LabelsSchema, _RecipeSchema,
                                    validate)
from fer_core.recipe.vocab import (FIXED_REASONS, FORMAT, LABEL_CUTS, LABEL_POLICIES, POLICIES, SPLIT_ORDER,
                                   filter_columns, label_cut_bits, reason_bit, reason_names)
from fer_core.signals.base import COLUMN_META

__all__ = [
    "COLUMN_META", "ClassRemoval", "Duplicates", "FIXED_REASONS", "FORMAT", "Filter", "LABEL_CUTS", "LABEL_POLICIES", "LabelPolicy",
    "METHOD_CODE", "METHOD_NAME", "PIXEL_SAME", "POLICIES", "Pairs", "Recipe", "SPLIT_ORDER", "_CUTS",
    "_DuplicatesSchema", "_FilterSchema", "_LabelsSchema", "_RecipeSchema", "accepted_pairs", "apply_overrides", "beyond", "crowd_marks",
    "cap_label_cut", "cap_per_class", "class_imbalance", "class_removals", "copy_pairs", "cross_split_copies",
    "decide", "default_recipe", "duplicate_groups", "duplicate_marks", "exact_classes", "filter_columns",
    "filter_cuts", "format_summary", "funnel", "has_reason", "imbalance_text", "label_cut_bits", "reason_bit", "reason_names",
    "reasons_text", "relabel_candidates", "removal_text", "robust_cut", "split_rejection_text", "split_rejections",
    "summarize", "validate",
]
