"""Crowd votes (FER+): ten annotators' votes per image and what they say.

A whole-table family with two producers: the FER+ import writes it for the FER+ images themselves, and a link
(``python -m fer_core link fer2013 ferplus``, :mod:`fer_core.links`) writes it for the images of another dataset
that hold the same faces, through the pixel-verified pairs. Either way the columns mean the same thing, so the
recipe (relabel to the crowd, set ties / unknown / not-a-face aside), the inspector, the review queues and the
evaluation read them the same way. Images without votes have ``crowd_votes`` 0 and an empty ``crowd_label``."""

from __future__ import annotations

from fer_core.signals.base import SignalColumn, SignalFamily
from fer_core.sources.ferplus import VOTE_COLUMNS

FAMILY = "votes"
VERSION = 1
_F = FAMILY
NOT_AN_EXPRESSION = ("tie", "unknown", "not_face")

COLUMNS = [
    SignalColumn("crowd_label", _F, "Crowd label", "The majority of the ten FER+ annotators' votes on the "
                 "taxonomy (contempt is its own class), or tie / unknown / not_face when the majority is not one "
                 "expression. Empty: no votes for this image.", "none", filterable=False),
    SignalColumn("crowd_share", _F, "Crowd agreement", "The top vote count over all votes (1.0 = all ten "
                 "annotators agree).", "none", "share", filterable=False, lower_bound=0, upper_bound=1),
    SignalColumn("crowd_votes", _F, "Crowd votes", "How many annotators voted (0 = no votes).", "none",
                 filterable=False),
    SignalColumn("crowd_given", _F, "Votes for the given label", "How many of the votes went to the image's "
                 "own label (0 of 10: the crowd never saw it).", "none", filterable=False),
    SignalColumn("crowd_source", _F, "Votes from", "The dataset the votes come from (itself, or a linked "
                 "dataset holding the same face).", "none", filterable=False),
    *[SignalColumn(f"votes_{c}", _F, f"Votes: {c}", f"Annotators who voted '{c}'.", "none", filterable=False)
      for c in VOTE_COLUMNS],
]


class Votes(SignalFamily):
    """Written by the FER+ import (``fer_core.crowd.write_own_votes``) or by a link
    (``fer_core.links.link``), with ``store.write_family_table``."""
    name, version, columns = FAMILY, VERSION, tuple(COLUMNS)
    per_image = False
    made_by = "the FER+ import, or a link to it (`python -m fer_core link {name} ferplus`)"
