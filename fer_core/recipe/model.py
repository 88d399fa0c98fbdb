"""The recipe itself: filters, duplicate and label policies, scope; YAML/JSON I/O.

Recipes are immutable values: a change makes a new recipe (``rec.with_filter("sharpness", min=250)``,
``with_duplicates``, ``with_labels``, ``replace``), so a recipe handed to decide, a job or another session can
never change under it; trying to change one in place raises ``FrozenInstanceError`` / ``TypeError``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from fer_core.errors import InvalidInput
from fer_core.recipe.schema import _CUTS, validate
from fer_core.recipe.vocab import (FIXED_REASONS, FORMAT, LABEL_CUTS, LABEL_POLICIES, POLICIES,  # noqa: F401
                                   SPLIT_ORDER, filter_columns, reason_bit, reason_names)

class FrozenDict(dict):
    """A dict that refuses changes (a recipe's filters, its derived_from note)."""

    def _refuse(self, *a, **kw):
        raise TypeError("a recipe is immutable: make a new one (Recipe.with_filter, with_duplicates, replace)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


@dataclass(frozen=True)
class Filter:
    enabled: bool = True
    min: float | None = None   # reject values below
    max: float | None = None   # reject values above
    review_min: float | None = None  # send values below to the review queue (not rejected)
    review_max: float | None = None  # send values above to the review queue

    def __post_init__(self):
        # plain floats whatever they were given as (numpy floats cannot be written to YAML; an int cut would
        # fingerprint differently once saved and read back as a float)
        object.__setattr__(self, "enabled", bool(self.enabled))
        for k in ("min", "max", "review_min", "review_max"):
            v = getattr(self, k)
            if v is not None:
                object.__setattr__(self, k, float(v))


@dataclass(frozen=True)
class Duplicates:
    exact: bool = True            # group pixel-identical images
    near: bool = True             # group perceptual-hash near duplicates
    near_threshold: int = 4       # Hamming bits (of 64)
    mirror: bool = False          # also mirrored copies (unreliable above 2 bits: faces mirror into other faces)
    mirror_threshold: int = 2
    policy: str = "keep_one"      # keep_one | drop_all | keep_all
    drop_leaked: bool = True      # drop training copies of val/test images (even with keep_all)
    prefer: tuple[str, ...] = SPLIT_ORDER
    embedding: bool = True        # near copies found by face embeddings (when computed)
    embed_threshold: float = 0.80  # cosine similarity of the whole-crop embeddings (looked at by eye on
                                   # FER2013: from ~0.78 up, pairs are the same photo re-cropped/re-contrasted;
                                   # below, different people and non-faces start to pair up)



@dataclass(frozen=True)
class LabelPolicy:
    """What happens to images below the ``label_quality`` reject cut (when label signals exist)."""
    policy: str = "drop"          # drop: reject them; relabel: keep them under the suggested label
    # The most of any one class (share of its in-scope images) that the label_quality cut may drop or relabel;
    # beyond it the class's best-scored flagged images are spared (they stay in the review queue). None: no cap.
    # label_quality is the model's probability of the given label, low for every image of a rare class, so a
    # global cut strips small classes (FER2013: 31% of `disgust` at 3% overall; its test recall fell from 0.49
    # to 0.02 in the A/B, bench/RESULTS.md). The data-derived default caps each class at 2x the overall share.
    class_cap: float | None = None
    # Crowd votes (the votes signals: FER+'s own, or through a link): "relabel" gives every voted image in scope
    # the crowd majority as its label; ``crowd_unsure`` "drop" rejects the images whose votes give no single
    # expression (a tie, unknown, not a face) or one the dataset does not have (FER+'s contempt in FER2013).
    crowd: str = "off"
    crowd_unsure: str = "keep"

    def __post_init__(self):
        if self.class_cap is not None:
            object.__setattr__(self, "class_cap", float(self.class_cap))

    def to_dict(self) -> dict:
        # written only when set, so recipes saved before these existed keep their exact form (and fingerprint)
        unset = {"class_cap": None, "crowd": "off", "crowd_unsure": "keep"}
        return {k: v for k, v in asdict(self).items() if not (k in unset and v == unset[k])}


@dataclass(frozen=True)
class Recipe:
    name: str = "default"
    scope: tuple[str, ...] = ("train",)
    filters: dict[str, Filter] = field(default_factory=FrozenDict)
    duplicates: Duplicates = field(default_factory=Duplicates)
    derived_from: dict = field(default_factory=dict)
    notes: str = ""
    labels: LabelPolicy = field(default_factory=LabelPolicy)
    # The most of any one class (share of its in-scope images, per split) that the automatic cuts together may
    # remove; beyond it the least certain rejections are spared and sent to review (see decide). None: off.
    class_cap: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "scope", tuple(str(s) for s in self.scope))
        if self.class_cap is not None:
            object.__setattr__(self, "class_cap", float(self.class_cap))
        object.__setattr__(self, "filters", FrozenDict(self.filters))
        object.__setattr__(self, "derived_from", FrozenDict(self.derived_from or {}))
        if not isinstance(self.duplicates.prefer, tuple):
            object.__setattr__(self, "duplicates", replace(self.duplicates, prefer=tuple(self.duplicates.prefer)))

    __hash__ = None   # holds dicts: compared by value, never hashed

    # -- a change makes a new recipe
    def replace(self, **changes) -> "Recipe":
        """This recipe with ``changes`` (name, scope, class_cap, notes, …)."""
        return replace(self, **changes)

    def with_filter(self, col: str, **changes) -> "Recipe":
        """This recipe with ``changes`` to one filter (enabled, min, max, review_min, review_max); a filter the
        recipe does not have yet starts from an enabled one without cuts."""
        f = replace(self.filters.get(col, Filter()), **changes)
        return replace(self, filters={**self.filters, col: f})

    def label_cut(self, columns) -> str | None:
        """The label signal this recipe cuts on (the first enabled one of ``LABEL_CUTS`` among ``columns``), else the
        one its review should rank by (the first of them the table has); None without label signals."""
        present = [c for c in LABEL_CUTS if c in columns]
        on = [c for c in present if c in self.filters and self.filters[c].enabled]
        return (on or present or [None])[0]

    def with_duplicates(self, **changes) -> "Recipe":
        return replace(self, duplicates=replace(self.duplicates, **changes))

    def with_labels(self, **changes) -> "Recipe":
        return replace(self, labels=replace(self.labels, **changes))

    # -- serialisation
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "name": self.name, "scope": list(self.scope),
             "filters": {k: asdict(f) for k, f in self.filters.items()},   # as they are: rounded at the source
             "duplicates": {**asdict(self.duplicates), "prefer": list(self.duplicates.prefer)},
             "labels": self.labels.to_dict()}
        if self.class_cap is not None:  # written only when set: recipes without it keep their form and fingerprint
            d["class_cap"] = self.class_cap
        d["derived_from"] = dict(self.derived_from)
        if self.notes:
            d["notes"] = self.notes
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        from fer_core.progress import atomic_write_text

        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1) if path.suffix == ".json" else self.to_yaml()
        atomic_write_text(path, text)
        return path

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None) -> "Recipe":
        """A recipe from its dict form, validated against the schema (see :func:`validate`); ``source`` (a
        file name) is named in the error. Valid recipes are built exactly as they were written."""
        validate(d, source)
        lp = LabelPolicy(**(d.get("labels") or {}))
        lp = replace(lp, class_cap=_num(lp.class_cap, "labels.class_cap"))
        filters = {k: Filter(v.get("enabled", True), *(_num(v.get(b), f"filters.{k}.{b}") for b in _CUTS))
                   for k, v in (d.get("filters") or {}).items()}
        return cls(str(d.get("name", "recipe")), list(d.get("scope") or ["train"]), filters,
                   Duplicates(**(d.get("duplicates") or {})), d.get("derived_from") or {}, d.get("notes", ""), lp,
                   _num(d.get("class_cap"), "class_cap"))

    @classmethod
    def from_text(cls, text: str | bytes, source: str, json_format: bool | None = None) -> "Recipe":
        """Parse YAML (or JSON, by default when ``source`` ends in .json) and validate; ``source`` names the file."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"Recipe '{source}' is not UTF-8 text (byte {exc.start}).",
                                   "A recipe is a YAML or JSON text file: save it again from the app.") from None
        is_json = source.lower().endswith(".json") if json_format is None else json_format
        try:
            data = json.loads(text) if is_json else yaml.safe_load(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"'{source}' is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
                               "Fix the file at that line, or save the recipe again from the app.") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            cm = getattr(exc, "context_mark", None)
            if getattr(exc, "context", None) and cm is not None:
                what += f", {exc.context} on line {cm.line + 1}"   # e.g. where an unclosed bracket opened
            raise InvalidInput(f"'{source}' is not valid YAML ({where}{what}).",
                               "Fix the file at that line (indentation, a missing ':' or an unclosed bracket), "
                               "or save the recipe again from the app.") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"Cannot read recipe '{path}' ({exc.strerror}).", "Check the path.") from exc
        return cls.from_text(text, path.name)

    def fingerprint(self) -> str:
        import hashlib

        d = self.to_dict()
        d.pop("name", None)
        d.pop("notes", None)
        return hashlib.blake2b(json.dumps(d, sort_keys=True).encode(), digest_size=8).hexdigest()


def _num(v, what: str = "a recipe value"):
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a number, not {v!r}.", "Fix the recipe file or save it again from the app.") from None


def rounded(v: float | None, digits: int = 6) -> float | None:
    """A cut as recipes hold it: ``digits`` significant digits, set once where the cut is made (the data-derived
    defaults; the sliders offer values already rounded), so a recipe in memory equals its file."""
    return None if v is None else float(f"{float(v):.{digits}g}")
