"""Recipes: thresholds and switches → keep/reject decisions with reasons. Pure, vectorised, instant.

A recipe is a small versioned YAML/JSON document. Its default thresholds come from the dataset's own
distribution (median ± k·MAD on each signal's natural scale, or a 0.5%/99.5% percentile where the
distribution is too concentrated for MAD), never from fixed constants, so FER2013 at 48×48 and a
224×224 dataset both start somewhere sensible.

``decide(signals, recipe, overrides, pairs)`` never touches an image file: it works on the signal table
and the precomputed duplicate candidate pairs, and returns one row per image with ``keep``, a reason
bitmask, the duplicate group and the override applied.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fer_core.errors import InvalidInput
from fer_core.signals.base import COLUMN_META

FORMAT = "fer-recipe/1"
SPLIT_ORDER = ("test", "val", "train")
POLICIES = ("keep_one", "drop_all", "keep_all")

# Reason bits. Filter reasons are named after their signal; the rest are fixed.
FIXED_REASONS = ["duplicate", "leak", "manual", "conflict"]


def filter_columns() -> list[str]:
    return [c.name for c in COLUMN_META.values() if c.filterable and c.direction != "none"]


def reason_names() -> list[str]:
    return filter_columns() + FIXED_REASONS


def reason_bit(name: str) -> int:
    return 1 << reason_names().index(name)


@dataclass
class Filter:
    enabled: bool = True
    min: float | None = None   # reject values below
    max: float | None = None   # reject values above
    review_min: float | None = None  # send values below to the review queue (not rejected)
    review_max: float | None = None  # send values above to the review queue


@dataclass
class Duplicates:
    exact: bool = True            # group pixel-identical images
    near: bool = True             # group perceptual-hash near duplicates
    near_threshold: int = 4       # Hamming bits (of 64)
    mirror: bool = False          # also mirrored copies (unreliable above 2 bits: faces mirror into other faces)
    mirror_threshold: int = 2
    policy: str = "keep_one"      # keep_one | drop_all | keep_all
    drop_leaked: bool = True      # drop training copies of val/test images (even with keep_all)
    prefer: list[str] = field(default_factory=lambda: list(SPLIT_ORDER))
    embedding: bool = True        # near copies found by face embeddings (when computed)
    embed_threshold: float = 0.80  # cosine similarity of the whole-crop embeddings (looked at by eye on
                                   # FER2013: from ~0.78 up, pairs are the same photo re-cropped/re-contrasted;
                                   # below, different people and non-faces start to pair up)


LABEL_POLICIES = ("drop", "relabel")


@dataclass
class LabelPolicy:
    """What happens to images below the ``label_quality`` reject cut (when label signals exist)."""
    policy: str = "drop"          # drop: reject them; relabel: keep them under the suggested label
    # The most of any one class (share of its in-scope images) that the label_quality cut may drop or relabel;
    # beyond it the class's best-scored flagged images are spared (they stay in the review queue). None: no cap.
    # label_quality is the model's probability of the given label, low for every image of a rare class, so a
    # global cut strips small classes (FER2013: 31% of `disgust` at 3% overall; its test recall fell from 0.49
    # to 0.02 in the A/B, bench/RESULTS.md). The data-derived default caps each class at 2x the overall share.
    class_cap: float | None = None

    def to_dict(self) -> dict:
        # class_cap is written only when set, so recipes saved before it existed keep their exact form
        return {k: v for k, v in asdict(self).items() if not (k == "class_cap" and v is None)}


@dataclass
class Recipe:
    name: str = "default"
    scope: list[str] = field(default_factory=lambda: ["train"])
    filters: dict[str, Filter] = field(default_factory=dict)
    duplicates: Duplicates = field(default_factory=Duplicates)
    derived_from: dict = field(default_factory=dict)
    notes: str = ""
    labels: LabelPolicy = field(default_factory=LabelPolicy)
    # The most of any one class (share of its in-scope images, per split) that the automatic cuts together may
    # remove; beyond it the least certain rejections are spared and sent to review (see decide). None: off.
    class_cap: float | None = None

    # -- serialisation
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "name": self.name, "scope": list(self.scope),
             "filters": {k: {kk: _clean(vv) for kk, vv in asdict(f).items()} for k, f in self.filters.items()},
             "duplicates": asdict(self.duplicates), "labels": self.labels.to_dict()}
        if self.class_cap is not None:  # written only when set: recipes without it keep their form and fingerprint
            d["class_cap"] = self.class_cap
        d["derived_from"] = self.derived_from
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
        lp.class_cap = _num(lp.class_cap, "labels.class_cap")
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

    def copy(self) -> "Recipe":
        return Recipe.from_dict(json.loads(json.dumps(self.to_dict())))

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


def _clean(v):
    if isinstance(v, float):
        return float(f"{v:.6g}")
    return v


# ---- schema -------------------------------------------------------------------------------------
# The dict form is checked against these models before a Recipe is built from it: unknown keys (a typo such
# as `mni:` would otherwise be ignored), strict booleans (`enabled: "false"` is not true), finite numbers in
# range, mappings where mappings go. The Recipe is then built from the dict as written, so a valid recipe
# keeps its exact values and fingerprint.

_CUTS = ("min", "max", "review_min", "review_max")


def _lenient_number(v):
    """Cut-offs and class_cap were always read with float(): numeric text ("1e3", which YAML reads as a string)
    still counts, "" means none; anything else is left for the schema's type error."""
    if isinstance(v, str):
        try:
            return float(v) if v.strip() else None
        except ValueError:
            return v
    return v


def _name_text(v):
    return str(v) if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) else v


_Cut = Annotated[float | None, BeforeValidator(_lenient_number)]
_Split = Literal[SPLIT_ORDER]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# Validation only (the dataclasses above hold the defaults): every key is optional.
class _FilterSchema(_Schema):
    enabled: bool = None
    min: _Cut = None
    max: _Cut = None
    review_min: _Cut = None
    review_max: _Cut = None


class _DuplicatesSchema(_Schema):
    exact: bool = None
    near: bool = None
    near_threshold: int = Field(None, ge=0, le=64)      # Hamming bits of 64
    mirror: bool = None
    mirror_threshold: int = Field(None, ge=0, le=64)
    policy: Literal[POLICIES] = None
    drop_leaked: bool = None
    prefer: list[_Split] = None
    embedding: bool = None
    embed_threshold: float = Field(None, ge=-1, le=1)   # cosine similarity


class _LabelsSchema(_Schema):
    policy: Literal[LABEL_POLICIES] = None
    class_cap: Annotated[_Cut, Field(ge=0, le=1)] = None


class _RecipeSchema(_Schema):
    format: str = None
    name: Annotated[str, BeforeValidator(_name_text)] = None
    scope: list[_Split] | None = None
    filters: dict[str, _FilterSchema] | None = None
    duplicates: _DuplicatesSchema | None = None
    derived_from: dict | None = None
    notes: str | None = None
    labels: _LabelsSchema | None = None
    class_cap: Annotated[_Cut, Field(ge=0, le=1)] = None


def _model_at(loc: tuple):
    """The schema of the mapping at key path ``loc`` (None where any keys go)."""
    if not loc:
        return _RecipeSchema
    if loc[0] == "filters" and len(loc) == 2:
        return _FilterSchema
    return {"duplicates": _DuplicatesSchema, "labels": _LabelsSchema}.get(loc[0]) if len(loc) == 1 else None


def _fields_at(loc: tuple) -> list[str]:
    m = _model_at(loc)
    return list(m.model_fields) if m else []


def _range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    return f"at least {lo:g}" if lo is not None else f"at most {hi:g}"


def _path(loc) -> str:
    """('filters', 'sharpness', 'mni') → filters.sharpness.mni; ('scope', 0) → scope[0]."""
    out = ""
    for i, part in enumerate(loc):
        index = i and loc[i - 1] in ("scope", "prefer") and isinstance(part, int)
        out += f"[{part}]" if index else ("." if out else "") + str(part)
    return out


def _show(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _did_you_mean(key, allowed) -> str:
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _problem(e: dict) -> str:
    """One pydantic error as a sentence: the key path, what is wrong, what is allowed."""
    loc, t, v = tuple(e["loc"]), e["type"], e.get("input")
    if t == "invalid_key":  # a key that is not text (YAML reads `1:` or `yes:` as a number or a boolean)
        loc, t = loc[:-1] + (v,), "extra_forbidden"
    path = _path(loc)
    if t == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        return f"unknown key '{path}'{_did_you_mean(loc[-1], allowed)}; allowed there: {', '.join(allowed)}"
    if t == "bool_type":
        return f"{path} must be true or false (a YAML boolean, without quotes), not {_show(v)}"
    if t in ("int_type", "int_from_float"):
        return f"{path} must be a whole number, not {_show(v)}"
    if t == "float_type":
        return f"{path} must be a number, not {_show(v)}"
    if t == "finite_number":
        return f"{path} must be a finite number, not {_show(v)}"
    if t in ("greater_than_equal", "less_than_equal"):
        m = _model_at(loc[:-1])
        meta = m.model_fields[loc[-1]].metadata if m and loc[-1] in m.model_fields else []
        lo = next((x.ge for x in meta if hasattr(x, "ge")), None)
        hi = next((x.le for x in meta if hasattr(x, "le")), None)
        return f"{path} must be {_range_text(lo, hi)}, not {_show(v)}"
    if t == "literal_error":
        options = re.findall(r"'([^']*)'", e["ctx"]["expected"])
        return f"{path} must be one of {', '.join(options)}, not {_show(v)}{_did_you_mean(v, options)}"
    if t in ("dict_type", "model_type"):
        keys = _fields_at(loc)
        return f"{path} must be a mapping (key: value lines)" + (f" of {', '.join(keys)}" if keys else "") + f", not {_show(v)}"
    if t == "list_type":
        return f"{path} must be a list such as [train, val], not {_show(v)}"
    if t == "string_type":
        return f"{path} must be text, not {_show(v)}"
    return f"{path}: {e['msg']}, not {_show(v)}"


def validate(d, source: str | None = None) -> None:
    """Check a recipe's dict form; raise InvalidInput naming the file, each offending key path and what is
    allowed there (with the closest valid key for a typo)."""
    where = f"Recipe '{source}'" if source else "The recipe"
    hint = "Fix the file (or save the recipe again from the app); `python -m fer_core recipe NAME` writes a valid one."
    if not isinstance(d, dict):
        raise InvalidInput(f"{where} must be a mapping of keys (format, name, scope, filters, duplicates, labels), "
                           f"not {_show(d)}.", hint)
    fmt = d.get("format", FORMAT)
    if fmt != FORMAT:
        raise InvalidInput(f"{where}: format {_show(fmt)} is an unknown recipe format.", f"This version reads {FORMAT}.")
    problems = []
    filters = d.get("filters")
    known = filter_columns()
    if isinstance(filters, dict):
        for k in filters:
            if k not in known:
                problems.append(f"filters.{k}: the recipe filters on unknown signal '{k}'{_did_you_mean(k, known)}; "
                                f"known signals: {', '.join(known)}")
        check = {k: v for k, v in filters.items() if k in known}
        d = {**d, "filters": check}
        problems += _range_problems(check)
    try:
        _RecipeSchema.model_validate(d)
    except ValidationError as exc:
        problems += [_problem(e) for e in exc.errors(include_url=False)]
    else:
        try:
            json.dumps(d.get("derived_from") or {})
        except (TypeError, ValueError):
            problems.append("derived_from must hold only text, numbers, lists and mappings")
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise InvalidInput(f"{where}: " + "; ".join(problems[:6]) + more + ".", hint)


def _range_problems(filters: dict) -> list[str]:
    """Cut-offs outside the values a signal can take (a brightness max of -5 rejects every image)."""
    out = []
    for k, f in filters.items():
        m = COLUMN_META[k]
        lo, hi = m.lower_bound, m.upper_bound
        for b in _CUTS:
            v = _lenient_number(f.get(b)) if isinstance(f, dict) else None
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue  # none, or not a number: the schema reports it
            tol = 1e-9 * max(1.0, abs(v))
            if (lo is not None and v < lo - tol) or (hi is not None and v > hi + tol):
                out.append(f"filters.{k}.{b} must be {_range_text(lo, hi)} ({m.unit}), not {v:g}; "
                           "leave it out for no cut")
    return out


# ---- defaults from the data ---------------------------------------------------------------------

def _forward(x: np.ndarray, transform: str) -> np.ndarray:
    return np.log1p(np.maximum(x, 0)) if transform == "log" else x


def _backward(x: float, transform: str) -> float:
    return float(np.expm1(x)) if transform == "log" else float(x)


def robust_cut(values: np.ndarray, direction: str, k: float, transform: str = "linear",
               lower_bound: float | None = None, upper_bound: float | None = None) -> tuple[float | None, float | None]:
    """(min, max) cut-offs from the distribution of ``values``: median ± k·MAD on the transformed scale.

    Where the distribution is too concentrated for MAD (≥ 25% of the values equal the median, e.g. a
    clipping share that is 0 for most images), the 0.5% / 99.5% percentile is used instead.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None, None
    t = _forward(v, transform)
    med = float(np.median(t))
    mad = 1.4826 * float(np.median(np.abs(t - med)))
    concentrated = mad == 0 or float(np.mean(t == med)) >= 0.25
    lo = hi = None
    if direction in ("low", "both"):
        lo = float(np.percentile(v, 0.5)) if concentrated else _backward(med - k * mad, transform)
    if direction in ("high", "both"):
        hi = float(np.percentile(v, 99.5)) if concentrated else _backward(med + k * mad, transform)
    if lo is not None and lower_bound is not None and lo < lower_bound:
        lo = None if direction == "low" else float(lower_bound)
    if hi is not None and upper_bound is not None and hi > upper_bound:
        hi = None if direction == "high" else float(upper_bound)
    return lo, hi


def _low_tail_cut(v: np.ndarray, q: float) -> float:
    """A cut with at least q% of the values strictly below it: halfway between the ⌈q%·n⌉-th smallest value
    and the next larger distinct value (ties at the bottom, e.g. many zeros, stay below the cut)."""
    s = np.sort(v.astype(np.float64))
    k = max(1, int(np.ceil(q / 100.0 * len(s))))
    at = s[k - 1]
    above = s[s > at]
    return float((at + above[0]) / 2) if len(above) else float(at)


def default_recipe(signals: pd.DataFrame, name: str = "default", scope: list[str] | None = None) -> Recipe:
    """The data-derived starting recipe: one filter per signal column present, cut-offs from its distribution."""
    scope = scope or ["train"]
    base = signals[signals["split"].isin(scope)] if "split" in signals else signals
    if base.empty:
        base = signals
    filters = {}
    for col in filter_columns():
        if col not in signals:
            continue
        m = COLUMN_META[col]
        vals = base[col].to_numpy()
        lo, hi = robust_cut(vals, m.direction, m.k, m.transform, m.lower_bound, m.upper_bound)
        rlo = rhi = None
        if m.default_rule == "percentile":
            v = vals[np.isfinite(vals.astype(np.float64))] if len(vals) else vals
            lo = hi = None
            if len(v):
                def cap(x, c):
                    return min(x, c) if c is not None else x
                if m.direction == "low":
                    rlo = cap(_low_tail_cut(v, m.review_q), m.review_cap)
                    lo = None if m.review_only else cap(_low_tail_cut(v, m.reject_q), m.reject_cap)
                else:
                    rhi = float(np.percentile(v, 100 - m.review_q))
                    hi = None if m.review_only else float(np.percentile(v, 100 - m.reject_q))
        elif m.review_only:
            (rlo, rhi), lo, hi = (lo, hi), None, None
        elif m.review_k is not None:
            rlo, rhi = robust_cut(vals, m.direction, m.review_k, m.transform, m.lower_bound, m.upper_bound)
        any_cut = any(v is not None for v in (lo, hi, rlo, rhi))
        filters[col] = Filter(m.default_enabled and any_cut, lo, hi, rlo, rhi)
    derived = {"dataset": signals.attrs.get("dataset"), "catalog_hash": signals.attrs.get("catalog_hash"),
               "method": "median ± k·MAD per signal (k in its metadata); 0.5/99.5 percentiles where MAD is degenerate; "
              "face score: 1% / 0.3% percentiles capped at 0.5 / 0.2",
               "images": int(len(base))}
    labels = LabelPolicy()
    lq = filters.get("label_quality")
    if lq is not None and lq.min is not None:
        q = base["label_quality"].to_numpy(np.float64, na_value=np.nan)
        share = float(np.mean(q[np.isfinite(q)] < lq.min)) if np.isfinite(q).any() else 0.0
        labels.class_cap = round(max(2 * share, 0.01), 4)
        derived["method"] += "; label cut: at most 2x its overall share of any one class"
    return Recipe(name=name, scope=scope, filters=filters, duplicates=Duplicates(), derived_from=derived,
                  labels=labels)


# ---- decisions ----------------------------------------------------------------------------------

METHOD_CODE = {"exact": 0, "phash": 1, "mirror": 2, "shift": 3, "embedding": 4}
METHOD_NAME = {v: k for k, v in METHOD_CODE.items()}


@dataclass
class Pairs:
    """Duplicate candidate pairs as positions into a signal table sorted by id."""

    ia: np.ndarray
    ib: np.ndarray
    distance: np.ndarray          # Hamming bits (hash methods); 0 for embedding pairs
    method: np.ndarray            # METHOD_CODE
    similarity: np.ndarray | None = None  # cosine (embedding pairs); 1 for hash pairs
    pixel_corr: np.ndarray | None = None  # aligned pixel correlation (hash pairs; NaN: not checked)

    def __post_init__(self):
        if self.similarity is None:
            self.similarity = np.ones(len(self.ia), np.float32)
        if self.pixel_corr is None:
            self.pixel_corr = np.full(len(self.ia), np.nan, np.float32)

    @classmethod
    def empty(cls) -> "Pairs":
        z = np.zeros(0, np.int64)
        return cls(z, z, z.astype(np.int16), z.astype(np.int8), z.astype(np.float32), z.astype(np.float32))

    def pixel_same(self) -> float:
        """The pixel correlation from which a copy of a copy is confirmed, derived from this dataset: the 98th
        percentile over its candidate pairs 9 or more bits apart (nearly all different photographs), and at
        least PIXEL_SAME. FER2013: 0.60; CK+ (one lab, aligned faces: different people correlate more): 0.78."""
        if getattr(self, "_pixel_same", None) is None:
            far = (self.method == METHOD_CODE["phash"]) & (self.distance >= 9) & np.isfinite(self.pixel_corr)
            q = float(np.percentile(self.pixel_corr[far], 98)) if far.sum() >= 200 else PIXEL_SAME
            self._pixel_same = max(PIXEL_SAME, q)
        return self._pixel_same

    @classmethod
    def from_frame(cls, pairs: pd.DataFrame | None, ids: np.ndarray) -> "Pairs":
        if pairs is None or pairs.empty:
            return cls.empty()
        if "distance" not in pairs:
            pairs = pairs.assign(distance=0)
        if "similarity" not in pairs:
            pairs = pairs.assign(similarity=1.0)
        if "pixel_corr" not in pairs:
            pairs = pairs.assign(pixel_corr=np.nan)
        pairs = pairs.assign(distance=pairs["distance"].fillna(0), similarity=pairs["similarity"].fillna(1.0))
        ia = np.searchsorted(ids, pairs["a"].to_numpy())
        ib = np.searchsorted(ids, pairs["b"].to_numpy())
        n = len(ids)
        ok = (ia < n) & (ib < n)
        ok &= (ids[np.minimum(ia, n - 1)] == pairs["a"].to_numpy()) & (ids[np.minimum(ib, n - 1)] == pairs["b"].to_numpy())
        return cls(ia[ok].astype(np.int64), ib[ok].astype(np.int64), pairs["distance"].to_numpy()[ok].astype(np.int16),
                   pairs["method"].map(METHOD_CODE).to_numpy()[ok].astype(np.int8),
                   pairs["similarity"].to_numpy()[ok].astype(np.float32),
                   pairs["pixel_corr"].to_numpy(np.float32, na_value=np.nan)[ok])


def accepted_pairs(pairs: Pairs, dup: Duplicates) -> np.ndarray:
    """Mask over ``pairs``: the candidate pairs this recipe calls copies (method switches and thresholds)."""
    sel = np.zeros(len(pairs.ia), bool)
    if dup.exact:
        sel |= pairs.method == METHOD_CODE["exact"]
    if dup.near:
        near = (pairs.distance <= dup.near_threshold) & np.isin(pairs.method, (METHOD_CODE["phash"], METHOD_CODE["shift"]))
        if dup.mirror:
            near |= (pairs.distance <= min(dup.near_threshold, dup.mirror_threshold)) & (pairs.method == METHOD_CODE["mirror"])
        sel |= near
    if dup.embedding:
        sel |= (pairs.method == METHOD_CODE["embedding"]) & (pairs.similarity >= dup.embed_threshold)
    return sel


def exact_classes(n: int, pairs: Pairs, sel: np.ndarray) -> np.ndarray:
    """Class per image: pixel-identical images (accepted exact pairs) share one. Equality is transitive, so
    chaining exact pairs is safe; class labels are 0..k-1."""
    ex = sel & (pairs.method == METHOD_CODE["exact"])
    if not ex.any():
        return np.arange(n)
    g = coo_matrix((np.ones(int(ex.sum()), np.int8), (pairs.ia[ex], pairs.ib[ex])), shape=(n, n))
    return connected_components(g, directed=False)[1]


# The least correlation of the fine detail of two thumbnails (fer_core.signals.duplicates.pixel_corr) from which a
# candidate pair that the recipe's threshold alone does not accept, but that a chain of accepted pairs links, is
# confirmed as a copy (each dataset derives its own, at least this: Pairs.pixel_same). Looked at on FER2013
# (6 bits): the pairs it confirms from 0.6 up are the same photograph re-cropped, shifted or re-contrasted;
# different photographs score a median 0.33 (95th percentile 0.52).
PIXEL_SAME = 0.6


def copy_pairs(n: int, pairs: Pairs, dup: Duplicates) -> tuple[np.ndarray, np.ndarray]:
    """(mask over ``pairs``, exact class per image): the pairs that make two images copies of each other under
    this recipe: those it accepts (:func:`accepted_pairs`), plus candidate pairs of its kinds that a chain of
    accepted pairs links and whose pixels confirm it (``pixel_corr`` ≥ ``pairs.pixel_same()``). Never a chain
    alone."""
    sel = accepted_pairs(pairs, dup)
    cls = exact_classes(n, pairs, sel)
    if dup.near:
        kinds = [METHOD_CODE["phash"], METHOD_CODE["shift"]] + ([METHOD_CODE["mirror"]] if dup.mirror else [])
        ver = ~sel & np.isin(pairs.method, kinds) & (pairs.pixel_corr >= pairs.pixel_same())
        if ver.any():
            u, v = cls[pairs.ia[sel]], cls[pairs.ib[sel]]
            comp = connected_components(coo_matrix((np.ones(len(u), np.int8), (u, v)), shape=(n, n)),
                                        directed=False)[1]
            sel = sel | (ver & (comp[cls[pairs.ia]] == comp[cls[pairs.ib]]))
    return sel, cls


def cross_split_copies(split: np.ndarray, pairs: Pairs, sel: np.ndarray,
                       cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training images with a copy in val/test, val/test images with a copy in train). A copy is a pair of
    :func:`copy_pairs` (``sel``, ``cls``), directly or through a pixel-identical twin, never a copy of a copy."""
    n = len(split)
    is_eval, is_train = np.isin(split, ("val", "test")), split == "train"
    has_eval = np.bincount(cls, is_eval, minlength=n) > 0
    has_train = np.bincount(cls, is_train, minlength=n) > 0
    u, v = cls[pairs.ia[sel]], cls[pairs.ib[sel]]
    eval_near, train_near = has_eval.copy(), has_train.copy()
    eval_near[u[has_eval[v]]] = True
    eval_near[v[has_eval[u]]] = True
    train_near[u[has_train[v]]] = True
    train_near[v[has_train[u]]] = True
    return is_train & eval_near[cls], is_eval & train_near[cls]


def duplicate_groups(n: int, pairs: Pairs, dup: Duplicates, priority: np.ndarray | None = None,
                     sel: np.ndarray | None = None, cls: np.ndarray | None = None) -> np.ndarray:
    """Group id per image (-1 = in no group): every two members of a group are copies of each other.

    Pixel-identical images form one class first (equality is transitive, so that is safe). Near pairs are not
    transitive: at 6 bits A~B and B~C link two different people A and C through B. So classes are taken in
    ``priority`` order (lowest first: the copy the policy keeps; default: position); each one not yet in a
    group leads a new one, and its free neighbours join it, best first, only if they have an accepted pair
    with every class already in it (complete linkage) — a pair of :func:`copy_pairs`: accepted by the recipe,
    or linked by accepted pairs and confirmed on the pixels. A chain A-B-C with A and C far apart (and
    different pixels) is never one group. (``sel``/``cls``: :func:`copy_pairs`, when the caller has it.)"""
    group = np.full(n, -1, np.int64)
    if sel is None or cls is None:
        sel, cls = copy_pairs(n, pairs, dup)
    if not sel.any():
        return group
    a, b = pairs.ia[sel], pairs.ib[sel]
    u, v = cls[a], cls[b]
    near = u != v
    u, v = u[near], v[near]
    involved = np.unique(np.concatenate([u, v]))             # classes with a near pair
    lead = np.arange(n)                                       # the leading class of each class's group
    if len(involved):
        m = len(involved)
        imgs = np.unique(np.concatenate([a, b]))
        pri = imgs.astype(np.float64) if priority is None else np.asarray(priority, np.float64)[imgs]
        cpri = np.full(n, np.inf)
        np.minimum.at(cpri, cls[imgs], pri)                   # a class ranks as its best member
        ui, vi = np.searchsorted(involved, u), np.searchsorted(involved, v)
        adj = coo_matrix((np.ones(2 * len(ui), np.int8), (np.concatenate([ui, vi]), np.concatenate([vi, ui]))),
                         shape=(m, m)).tocsr()
        adj.sum_duplicates()
        ncomp, comp = connected_components(adj, directed=False)
        order = np.lexsort((np.arange(m), cpri[involved]))
        rank = np.empty(m, np.int64)
        rank[order] = np.arange(m)
        indptr, indices = adj.indptr, adj.indices
        size = np.bincount(comp, minlength=ncomp)
        clique = np.bincount(comp, np.diff(indptr), minlength=ncomp) == size * (size - 1)  # all pairs linked
        first = order[np.unique(comp[order], return_index=True)[1]]  # best class of each component
        assign = np.where(clique[comp], first[comp], -1)
        for k in order[~clique[comp[order]]].tolist():         # the rest: greedy, in priority order
            if assign[k] >= 0:
                continue
            assign[k] = k
            nb = indices[indptr[k]:indptr[k + 1]]
            nb = nb[assign[nb] < 0]
            joined = set()                                    # (besides k, a neighbour of each candidate)
            for c in nb[np.argsort(rank[nb])].tolist():
                if joined.issubset(indices[indptr[c]:indptr[c + 1]].tolist()):
                    assign[c] = k
                    joined.add(c)
        lead[involved] = involved[assign]
    g = lead[cls]
    ok = np.bincount(g, minlength=n)[g] > 1                   # a group of one is no group
    group[ok] = np.unique(g[ok], return_inverse=True)[1]
    return group


def decide(signals: pd.DataFrame, recipe: Recipe, overrides: pd.DataFrame | None = None,
           pairs: Pairs | pd.DataFrame | None = None) -> pd.DataFrame:
    """Keep/reject per image with every reason that applies. Pure and vectorised.

    ``signals`` must be sorted by id (as :func:`fer_core.store.load_signals` returns it). Returns a frame
    aligned with ``signals``:

    - ``flags``: bitmask (see :func:`reason_names`) of every reason that applies to the image, whatever
      its split; ``reasons``: the flags that count, i.e. those of images in the recipe's scope, plus
      "manual" for a reject override;
    - ``keep``: no counting reason, or a keep override (overrides apply within the scope: the test split
      stays untouched unless the scope includes it);
    - ``group``/``representative``: duplicate group (-1 for none) and the copy the policy keeps;
      ``eval_leaked``: a val/test image that has a copy in train;
    - ``override`` (keep/reject/relabel/""), ``label_final`` (the label after accepted relabels).
    """
    n = len(signals)
    ids = signals["id"].to_numpy()
    split = signals["split"].to_numpy()
    in_scope = np.isin(split, recipe.scope)
    names = reason_names()
    flags = np.zeros(n, np.int64)
    review = np.zeros(n, np.int64)
    for col, f in recipe.filters.items():
        if not f.enabled or col not in signals:
            continue
        v = signals[col].to_numpy(np.float64, na_value=np.nan)
        bit = 1 << names.index(col)
        if f.min is not None:
            flags[v < f.min] |= bit
        if f.max is not None:
            flags[v > f.max] |= bit
        if f.review_min is not None:
            review[v < f.review_min] |= bit
        if f.review_max is not None:
            review[v > f.review_max] |= bit
    # the label cut takes at most class_cap of any one class: the best-scored flagged images beyond it are
    # spared (still in the review band); ties broken by position (= id order), so decisions are deterministic
    label_capped = np.zeros(n, bool)
    cap = recipe.labels.class_cap
    if cap is not None and "label_quality" in names and "label_quality" in signals:
        bit = 1 << names.index("label_quality")
        fl = np.flatnonzero(((flags & bit) != 0) & in_scope)
        if len(fl):
            cats, codes = _codes(signals, "label")               # cached on the frame: slider moves reuse it
            codes = codes + 1                                     # a missing label (-1) is a class of its own
            allow = np.floor(cap * np.bincount(codes[in_scope], minlength=len(cats) + 1) + 1e-9).astype(np.int64)
            q = signals["label_quality"].to_numpy(np.float64, na_value=-np.inf)[fl]
            s_idx = fl[np.lexsort((fl, q, codes[fl]))]            # by class, then score, then position
            sc = codes[s_idx]
            rank = np.arange(len(s_idx)) - np.searchsorted(sc, sc, side="left")
            spare = s_idx[rank >= allow[sc]]
            flags[spare] &= ~bit
            review[spare] |= bit
            label_capped[spare] = True
    # label issues under the relabel policy: kept, under the suggested label (a keep override reverses it)
    auto_relabel = np.zeros(n, bool)
    if (recipe.labels.policy == "relabel" and "label_quality" in names and "suggested_label" in signals):
        bit = 1 << names.index("label_quality")
        cand = ((flags & bit) != 0) & (signals["suggested_label"].to_numpy(dtype=object) != signals["label"].to_numpy(dtype=object))
        cand &= pd.notna(signals["suggested_label"]).to_numpy()
        flags[cand] &= ~bit
        auto_relabel = cand
    # duplicates and leakage
    if isinstance(pairs, pd.DataFrame) or pairs is None:
        pairs = Pairs.from_frame(pairs, ids)
    dup = recipe.duplicates
    # leakage is a property of pairs (a copy of a val/test image), not of whatever group the image ends up in
    sel, cls = copy_pairs(n, pairs, dup)
    leak, eval_leaked = cross_split_copies(split, pairs, sel, cls)
    cand = np.unique(np.concatenate([pairs.ia[sel], pairs.ib[sel]]))
    priority = np.full(n, np.inf)                # the copy to keep first: preferred split, not itself a leak,
    if len(cand):                                # sharpest, then position
        rank = {s: i for i, s in enumerate(dup.prefer)}
        srank = np.array([rank.get(s, len(rank)) for s in split[cand]])
        sharp = (signals["sharpness"].to_numpy(np.float64, na_value=0.0)[cand] if "sharpness" in signals
                 else np.zeros(len(cand)))
        priority[cand[np.lexsort((cand, -sharp, leak[cand], srank))]] = np.arange(len(cand))
    group = duplicate_groups(n, pairs, dup, priority, sel, cls)
    rep = np.zeros(n, bool)
    members = np.flatnonzero(group >= 0)
    if len(members):
        m_sorted = members[np.lexsort((priority[members], group[members]))]  # best copy first within each group
        g_sorted = group[m_sorted]
        first = np.ones(len(m_sorted), bool)
        first[1:] = g_sorted[1:] != g_sorted[:-1]
        rep[m_sorted[first]] = True
        if dup.policy == "keep_one":
            extra = (group >= 0) & ~rep
        elif dup.policy == "drop_all":
            extra = group >= 0
        else:
            extra = np.zeros(n, bool)
        flags[extra & ~leak] |= reason_bit("duplicate")
        if dup.drop_leaked:
            flags[leak] |= reason_bit("leak")
        elif dup.policy != "keep_all":
            flags[leak & extra] |= reason_bit("duplicate")
        # copies that carry different labels: a review queue (relabel or drop)
        labs = signals["label"].to_numpy()
        g_lab = pd.DataFrame({"g": group[members], "l": labs[members]})
        n_lab = g_lab.groupby("g")["l"].nunique()
        conflict_groups = n_lab.index[n_lab.to_numpy() > 1].to_numpy()
        review[(group >= 0) & np.isin(group, conflict_groups)] |= reason_bit("conflict")
    class_capped = (_cap_per_class(signals, recipe, flags, review, in_scope) if recipe.class_cap is not None
                    else np.zeros(n, bool))
    # overrides: recorded for every image, applied within the recipe's scope
    override = np.full(n, "", dtype=object)
    label_final = signals["label"].to_numpy(dtype=object).copy()
    auto_relabel &= in_scope
    if auto_relabel.any():
        label_final[auto_relabel] = signals["suggested_label"].to_numpy(dtype=object)[auto_relabel]
    if overrides is not None and len(overrides):
        oid = overrides["image_id"].to_numpy()
        pos = np.searchsorted(ids, oid)
        okp = pos < n
        okp &= ids[np.minimum(pos, n - 1)] == oid
        ov = overrides[okp]
        pos = pos[okp]
        override[pos] = ov["action"].to_numpy()
        relabel = (ov["action"].to_numpy() == "relabel") & in_scope[pos]
        label_final[pos[relabel]] = ov["label"].to_numpy()[relabel]
        reverse = (ov["action"].to_numpy() != "relabel") & auto_relabel[pos]  # a person's keep/reject wins
        label_final[pos[reverse]] = signals["label"].to_numpy(dtype=object)[pos[reverse]]
        auto_relabel[pos[reverse]] = False
    manual = (override == "reject") & in_scope
    reasons = np.where(in_scope, flags, 0)
    reasons[manual] |= reason_bit("manual")
    keep = (reasons == 0) | ((override == "keep") & in_scope)
    review &= ~flags  # an image already flagged for rejection on a signal is not also "to review" on it
    return pd.DataFrame({"id": ids, "keep": keep, "reasons": reasons, "flags": flags, "review": review,
                         "group": group, "representative": rep, "eval_leaked": eval_leaked, "override": override,
                         "label_final": label_final, "in_scope": in_scope, "auto_relabel": auto_relabel,
                         "label_capped": label_capped, "class_capped": class_capped})


def _cap_per_class(signals: pd.DataFrame, recipe: Recipe, flags: np.ndarray, review: np.ndarray,
                   in_scope: np.ndarray) -> np.ndarray:
    """The recipe-level ``class_cap``: the automatic cuts together remove at most ``class_cap`` of the in-scope
    images of any (split, label). Leak rejections count towards it but are never spared (a training copy of a
    test image would inflate the test accuracy); beyond the cap the least certain rejections are spared, in
    this order: fewest reasons first, extra duplicate copies before signal cuts (a spared copy adds no
    unseen face, a spared outlier may be a blank frame), then the signal cut nearest the cut (an image's
    certainty is the share of in-scope images further past its most extreme cut), then position (= id order).
    ``flags``/``review`` are updated in place (the spared go to review under the same reasons); returns the
    spared mask."""
    n = len(flags)
    spared = np.zeros(n, bool)
    flagged = in_scope & (flags != 0)
    if not flagged.any():
        return spared
    leak = (flags & reason_bit("leak")) != 0
    s_cats, s_codes = _codes(signals, "split")
    l_cats, l_codes = _codes(signals, "label")
    key = s_codes * (len(l_cats) + 1) + (l_codes + 1)            # (split, label); a missing label is a class
    size = np.bincount(key[in_scope], minlength=key.max() + 1)
    allow = np.floor(recipe.class_cap * size + 1e-9).astype(np.int64) - np.bincount(key[flagged & leak],
                                                                                       minlength=len(size))
    cand = np.flatnonzero(flagged & ~leak)
    if not len(cand):
        return spared
    fbits = flags[cand]
    n_reasons = np.zeros(len(cand), np.int64)
    for i in range(len(reason_names())):
        n_reasons += (fbits >> i) & 1
    filt = np.zeros(len(cand), bool)
    tail = np.ones(len(cand))                                    # 1: no signal cut (nothing is more borderline)
    names = reason_names()
    for col, f in recipe.filters.items():
        bit = 1 << names.index(col)
        hit = (fbits & bit) != 0
        if not hit.any():
            continue
        filt |= hit
        v = signals[col].to_numpy(np.float64, na_value=np.nan)
        ref = np.sort(v[in_scope & np.isfinite(v)])
        x = v[cand[hit]]
        below = np.searchsorted(ref, x, side="left") / max(len(ref), 1)
        above = (len(ref) - np.searchsorted(ref, x, side="right")) / max(len(ref), 1)
        side = np.where(x < (f.min if f.min is not None else -np.inf), below, above)
        tail[hit] = np.minimum(tail[hit], side)
    order = cand[np.lexsort((cand, -tail, filt, n_reasons, key[cand]))]   # by class, most spareable first
    k = key[order]
    rank = np.arange(len(order)) - np.searchsorted(k, k, side="left")
    # the most certain rejections stay: within its class an image is spared while more than `allow` remain
    n_class = np.bincount(k, minlength=len(size))
    spare = order[rank < n_class[k] - np.maximum(allow[k], 0)]
    spared[spare] = True
    review[spare] |= flags[spare]
    flags[spare] = 0
    return spared


def reasons_text(bits: np.ndarray | pd.Series, sep: str = ";") -> np.ndarray:
    """Bitmasks → "sharpness;duplicate" strings (vectorised over the few distinct masks)."""
    bits = np.asarray(bits, dtype=np.int64)
    names = reason_names()
    uniq, inv = np.unique(bits, return_inverse=True)
    texts = np.array([sep.join(nm for i, nm in enumerate(names) if u >> i & 1) for u in uniq], dtype=object)
    return texts[inv]


def has_reason(bits: np.ndarray | pd.Series, name: str) -> np.ndarray:
    return (np.asarray(bits, dtype=np.int64) & reason_bit(name)) != 0


def _codes(signals: pd.DataFrame, col: str):
    """(categories, integer codes) of a column, cached on the frame (signal tables are reused read-only)."""
    cache = signals.attrs.setdefault("_codes", {})
    if col not in cache:
        inv, cats = pd.factorize(signals[col], sort=True)
        cache[col] = (np.asarray(cats).astype(str), inv)
    return cache[col]


def _kept_rejected_by(coded, keep: np.ndarray, order: list[str] | None = None) -> dict:
    cats, inv = coded
    kept = np.bincount(inv, weights=keep, minlength=len(cats)).astype(int)
    total = np.bincount(inv, minlength=len(cats))
    out = {str(c): {"kept": int(k), "rejected": int(t - k)} for c, k, t in zip(cats, kept, total)}
    if order:
        out = {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}
    return out


def summarize(signals: pd.DataFrame, decisions: pd.DataFrame) -> dict:
    """Counts kept/rejected overall, per split, per label and per reason (an image may have several)."""
    from fer_core.sources.labels import CANONICAL

    keep = decisions["keep"].to_numpy()
    out = {"images": int(len(keep)), "kept": int(keep.sum()), "rejected": int((~keep).sum())}
    out["by_split"] = _kept_rejected_by(_codes(signals, "split"), keep, ["train", "val", "test"])
    out["by_label"] = _kept_rejected_by(_codes(signals, "label"), keep, list(CANONICAL))
    bits = decisions["reasons"].to_numpy()
    names = reason_names()
    single = bits & (bits - 1) == 0
    out["by_reason"], out["only_reason"] = {}, {}
    for i, nm in enumerate(names):
        has = ((bits >> i) & 1) == 1
        if has.any():
            out["by_reason"][nm] = int(has.sum())
            out["only_reason"][nm] = int((has & single).sum())
    override = decisions["override"].to_numpy()
    out["overridden"] = int((override != "").sum())
    out["relabelled"] = int(((override == "relabel") & decisions["in_scope"].to_numpy()).sum())
    if "auto_relabel" in decisions:
        out["auto_relabelled"] = int((decisions["auto_relabel"].to_numpy() & keep).sum())
    if "label_capped" in decisions:
        out["label_capped"] = int(decisions["label_capped"].to_numpy().sum())
    if "class_capped" in decisions:
        out["class_capped"] = int(decisions["class_capped"].to_numpy().sum())
    g = decisions["group"].to_numpy()
    out["duplicate_groups"] = int(len(np.unique(g[g >= 0])))
    split = signals["split"].to_numpy()
    leaked = decisions["eval_leaked"].to_numpy()
    out["eval_leaked"] = {s: int((leaked & (split == s)).sum()) for s in ("val", "test")}
    out["train_leak_copies"] = int(has_reason(decisions["flags"], "leak").sum())
    if "review" in decisions:
        rv = decisions["review"].to_numpy() & np.where(decisions["in_scope"].to_numpy(), -1, 0)
        out["to_review"] = {nm: int(((rv >> i) & 1).sum()) for i, nm in enumerate(names) if ((rv >> i) & 1).any()}
    out["class_removals"] = [w._asdict() for w in class_removals(signals, decisions)]
    out["class_imbalance"] = class_imbalance(signals, decisions)
    out["split_rejections"] = split_rejections(signals, decisions)
    return out


def split_rejections(signals: pd.DataFrame, decisions: pd.DataFrame, limit: float = 0.5) -> list[dict]:
    """Splits of which the decisions reject more than ``limit``: almost always a cut-off on the wrong side
    (e.g. a brightness max of 1 with scope train+test rejects nearly every image), never a sensible clean-up."""
    cats, inv = _codes(signals, "split")
    total = np.bincount(inv, minlength=len(cats))
    rejected = np.bincount(inv, weights=~decisions["keep"].to_numpy(), minlength=len(cats)).astype(int)
    return [{"split": str(c), "rejected": int(r), "of": int(t), "share": float(r / t)}
            for c, r, t in zip(cats, rejected, total) if t and r / t > limit]


def split_rejection_text(w: dict) -> str:
    return (f"The recipe rejects {w['share']:.0%} of the **{w['split']}** split ({w['rejected']:,} of {w['of']:,} "
            "images): check its cut-offs, one may be on the wrong side")


class ClassRemoval(NamedTuple):
    split: str
    label: str
    before: int      # images of the class in the split
    after: int       # kept by the whole recipe (overrides included)
    share: float     # removed share of the class
    overall: float   # removed share of the whole split


def class_removals(signals: pd.DataFrame, decisions: pd.DataFrame, ratio: float = 2.0, floor: float = 0.10,
                   min_images: int = 10) -> list[ClassRemoval]:
    """Classes that the whole recipe (every reason together, overrides included) strips: per split (train
    first), the labels whose removed share is more than ``ratio`` × the split's removed share, more than
    ``floor``, and at least ``min_images`` images. Unlike :func:`class_imbalance` (one reason at a time), it
    sees cuts that add up: FER2013's default recipe removes 37.6% of training `disgust` (436 → 272) and 35.5%
    of `surprise` against 13.9% of the training split, though no single reason takes more than 22%."""
    keep = decisions["keep"].to_numpy()
    s_cats, s_codes = _codes(signals, "split")
    l_cats, l_codes = _codes(signals, "label")
    out = []
    first = ["train", "val", "test"]
    for si in sorted(range(len(s_cats)), key=lambda i: (first + [s_cats[i]]).index(s_cats[i])):
        in_split = s_codes == si
        removed = int((~keep[in_split]).sum())
        if not removed:
            continue
        overall = removed / int(in_split.sum())
        lc = l_codes[in_split]
        total = np.bincount(lc[lc >= 0], minlength=len(l_cats))
        kept = np.bincount(lc[lc >= 0], weights=keep[in_split][lc >= 0], minlength=len(l_cats)).astype(int)
        rows = [ClassRemoval(str(s_cats[si]), str(c), int(t), int(k), float((t - k) / t), overall)
                for c, t, k in zip(l_cats, total, kept)
                if t and t - k >= min_images and (t - k) / t > max(ratio * overall, floor)]
        out += sorted(rows, key=lambda w: -w.share)
    return out


def removal_text(w: ClassRemoval | dict) -> str:
    w = w if isinstance(w, ClassRemoval) else ClassRemoval(**w)
    split = {"train": "training", "val": "validation"}.get(w.split, w.split)
    return (f"The recipe removes {w.share:.1%} of {split} **{w.label}** ({w.before:,} → {w.after:,}) against "
            f"{w.overall:.1%} of all {split} images")


def class_imbalance(signals: pd.DataFrame, decisions: pd.DataFrame, ratio: float = 3.0, margin: float = 0.05,
                    min_images: int = 10) -> list[dict]:
    """Reasons that hit one class much harder than the rest of the scope: for each reason, the labels whose
    share rejected by it is at least ``ratio`` × the share over all in-scope images and ``margin`` above it
    (and ≥ ``min_images`` images). A global cut on a signal that depends on the class — label_quality is
    the model's probability of the given label, which is low for every image of a rare class — can strip a
    small class; FER2013's default label cut removed 31% of `disgust` (3% overall), and its recall on the
    test split collapsed in the A/B (bench/RESULTS.md)."""
    scope = decisions["in_scope"].to_numpy()
    if not scope.any():
        return []
    cats, inv = _codes(signals, "label")
    inv_s = inv[scope]
    total = np.bincount(inv_s, minlength=len(cats))
    bits = decisions["reasons"].to_numpy()[scope]
    keep = decisions["keep"].to_numpy()[scope]
    out = []
    for i, nm in enumerate(reason_names()):
        has = (((bits >> i) & 1) == 1) & ~keep
        n = int(has.sum())
        if n < min_images:
            continue
        overall = n / len(has)
        per = np.bincount(inv_s, weights=has, minlength=len(cats))
        for c, k, t in zip(cats, per, total):
            if t and k >= min_images and k / t >= max(ratio * overall, overall + margin):
                out.append({"reason": nm, "label": str(c), "rejected": int(k), "of": int(t),
                            "share": float(k / t), "overall_share": float(overall)})
    return out


def imbalance_text(w: dict) -> str:
    return (f"`{w['reason']}` rejects {w['share']:.0%} of **{w['label']}** ({w['rejected']:,} of {w['of']:,}) "
            f"against {w['overall_share']:.1%} of all images in scope")


def format_summary(s: dict) -> str:
    lines = [f"{s['images']:,} images: {s['kept']:,} kept, {s['rejected']:,} rejected"]
    for k, v in s["by_split"].items():
        lines.append(f"  {k:6s} kept {v['kept']:7,d}  rejected {v['rejected']:6,d}")
    lines.append("per label (kept / rejected):")
    for k, v in s["by_label"].items():
        lines.append(f"  {k:9s} {v['kept']:7,d} / {v['rejected']:,}")
    lines.append("per reason (an image may have several; 'only' = its single reason):")
    for k, v in s["by_reason"].items():
        lines.append(f"  {k:13s} {v:6,d}  (only {s['only_reason'].get(k, 0):,})")
    lines.append(f"duplicate groups: {s['duplicate_groups']:,}; val/test images with a copy in train: "
                 f"val {s['eval_leaked']['val']:,}, test {s['eval_leaked']['test']:,} "
                 f"({s['train_leak_copies']:,} training copies flagged)")
    if s.get("to_review"):
        lines.append("sent to review (not rejected): " + ", ".join(f"{k} {v:,}" for k, v in s["to_review"].items()))
    if s.get("auto_relabelled"):
        lines.append(f"relabelled to the suggested label (label policy 'relabel'): {s['auto_relabelled']:,}")
    if s.get("label_capped"):
        lines.append(f"label issues spared by the per-class cap (left for review): {s['label_capped']:,}")
    if s.get("class_capped"):
        lines.append(f"rejections spared by the recipe's per-class cap (left for review): {s['class_capped']:,}")
    if s["overridden"]:
        lines.append(f"manual overrides: {s['overridden']:,} ({s['relabelled']:,} relabels applied)")
    for w in s.get("split_rejections", []):
        lines.append("WARNING: " + split_rejection_text(w).replace("**", "") + ".")
    for w in s.get("class_removals", []):
        lines.append("WARNING: " + removal_text(w).replace("**", "") + " — a small class may vanish; cap the removal "
                     "per class (recipe class_cap; decide --class-cap) or loosen the cuts that hit it.")
    for w in s.get("class_imbalance", []):
        lines.append("WARNING: " + imbalance_text(w).replace("**", "").replace("`", "")
                     + " — a small class may vanish; check it on the Review page or loosen that cut.")
    return "\n".join(lines)
