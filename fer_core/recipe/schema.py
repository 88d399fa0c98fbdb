"""The recipe schema (pydantic): every key, type and range checked, with one sentence per problem."""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from fer_core.errors import InvalidInput
from fer_core.signals.base import COLUMN_META
from fer_core.recipe.vocab import CROWD_POLICIES, CROWD_UNSURE, FORMAT, LABEL_POLICIES, POLICIES, SPLIT_ORDER, filter_columns

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
    crowd: Literal[CROWD_POLICIES] = None
    crowd_unsure: Literal[CROWD_UNSURE] = None


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
