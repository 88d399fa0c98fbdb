"""Recipe schema under random input: a clear error naming the key, or a valid recipe that round-trips; never a
traceback. Plus the Quality sidebar's recipe upload/save messages and the split warning (AppTest)."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import yaml

from fer_core import recipe
from fer_core.errors import InvalidInput

SIGNALS = ["sharpness", "brightness", "contrast", "label_quality", "face_score", "face_roll"]
FILTER_KEYS = ["enabled", "min", "max", "review_min", "review_max"]
DUP_KEYS = {"exact": bool, "near": bool, "near_threshold": "bits", "mirror": bool, "mirror_threshold": "bits",
            "policy": recipe.POLICIES, "drop_leaked": bool, "prefer": "splits", "embedding": bool,
            "embed_threshold": "cos"}
WRONG = ["four", "false", "true", "", "1e3", 5, -3, 0, 0.5, -1.5, 1e12, float("nan"), float("inf"), float("-inf"),
         [1], ["train"], [], {"a": 1}, {}, None, True, False]


def _valid_recipe(rng) -> dict:
    """A random valid recipe from the grammar (every key optional)."""
    d = {"format": recipe.FORMAT, "name": f"r{rng.integers(100)}"}
    if rng.random() < 0.8:
        d["scope"] = list(rng.choice(recipe.SPLIT_ORDER, rng.integers(1, 4), replace=False))
    d["filters"] = {}
    for s in rng.choice(SIGNALS, rng.integers(0, 4), replace=False):
        m = recipe.COLUMN_META[s]
        hi = m.upper_bound if m.upper_bound is not None else 1e4
        f = {"enabled": bool(rng.random() < 0.7)}
        for b in rng.choice(recipe._CUTS, rng.integers(0, 3), replace=False):
            f[str(b)] = float(np.round(rng.uniform(m.lower_bound, hi), 3))
        d["filters"][str(s)] = f
    dup = {}
    for k, kind in DUP_KEYS.items():
        if rng.random() < 0.5:
            dup[k] = (bool(rng.random() < 0.5) if kind is bool else int(rng.integers(0, 65)) if kind == "bits"
                      else round(float(rng.uniform(-1, 1)), 3) if kind == "cos"
                      else list(rng.permutation(recipe.SPLIT_ORDER)) if kind == "splits" else str(rng.choice(kind)))
    d["duplicates"] = dup
    if rng.random() < 0.5:
        d["labels"] = {"policy": str(rng.choice(recipe.LABEL_POLICIES))}
        if rng.random() < 0.5:
            d["labels"]["class_cap"] = round(float(rng.random()), 4)
    if rng.random() < 0.3:
        d["derived_from"] = {"dataset": "x", "images": int(rng.integers(1000))}
    if rng.random() < 0.3:
        d["notes"] = "hand-tuned"
    return json.loads(json.dumps(d))  # plain Python types, as YAML would give


def _misspell(key: str, rng) -> str:
    i = int(rng.integers(len(key)))
    how = rng.integers(4)
    out = (key[:i] + key[i + 1:] if how == 0 else key[:i] + key[i] + key[i:] if how == 1
           else key[:i] + key[i + 1:i + 2] + key[i] + key[i + 2:] if how == 2 else key + "s")
    return out if out != key else key + "x"


def _mappings(d: dict, path=()):
    """Every (path, mapping) in the recipe, the top included."""
    yield path, d
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _mappings(v, path + (k,))


def _mutate(d: dict, rng) -> list[str]:
    """Apply 1–3 random mutations in place; return the key paths they touched."""
    touched = []
    for _ in range(int(rng.integers(1, 4))):
        spots = list(_mappings(d))
        path, m = spots[int(rng.integers(len(spots)))]
        what = rng.integers(4)
        if what == 0 and m:                                   # misspell an existing key
            k = list(m)[int(rng.integers(len(m)))]
            new = _misspell(str(k), rng)
            m[new] = m.pop(k)
            touched += [".".join(path + (str(k),)), ".".join(path + (new,))]
        elif what == 1 and m:                                 # wrong type / value at an existing key
            k = list(m)[int(rng.integers(len(m)))]
            m[k] = copy.deepcopy(WRONG[int(rng.integers(len(WRONG)))])
            touched.append(".".join(path + (str(k),)))
        elif what == 2:                                       # a valid key of some level, in the wrong place
            k = str(rng.choice(["filter", "mni", "polcy", "near_treshold", "enabled", "policy", "scope", "sharpness",
                                "class_cap", "min"]))
            m[k] = copy.deepcopy(WRONG[int(rng.integers(len(WRONG)))])
            touched.append(".".join(path + (k,)))
        else:                                                 # a bad item in a list
            key = "scope" if rng.random() < 0.5 else "prefer"
            holder = d if key == "scope" else d.get("duplicates")
            if isinstance(holder, dict) and isinstance(holder.get(key), list) and holder[key]:
                i = int(rng.integers(len(holder[key])))
                holder[key][i] = copy.deepcopy(WRONG[int(rng.integers(len(WRONG)))])
                touched.append(("" if key == "scope" else "duplicates.") + f"{key}[{i}]")
    return touched


def _names(msg: str, path: str) -> bool:
    return re.search(r"(^|[\s'(])" + re.escape(path) + r"($|[\s'.:;\[),])", msg) is not None


def test_fuzzed_recipes_load_or_name_the_key():
    rng = np.random.default_rng(0)
    outcomes = {"valid": 0, "invalid": 0}
    for case in range(400):
        d = _valid_recipe(rng)
        touched = _mutate(d, rng) if case % 8 else []           # every 8th case stays valid
        text = yaml.safe_dump(d, sort_keys=False)
        try:
            r = recipe.Recipe.from_text(text, "fuzz.yaml")
        except InvalidInput as exc:
            msg = exc.message
            assert touched, f"case {case}: a valid recipe was refused: {msg}\n{text}"
            assert "'fuzz.yaml'" in msg and exc.hint, msg
            assert any(_names(msg, p) for p in touched), f"case {case}: {msg!r} names none of {touched}\n{text}"
            outcomes["invalid"] += 1
            continue
        # valid: it round-trips unchanged through YAML and JSON, and decide-relevant values are sane
        for fmt in (False, True):
            again = (json.dumps(r.to_dict()) if fmt else r.to_yaml())
            back = recipe.Recipe.from_text(again, "again", json_format=fmt)
            assert json.dumps(back.to_dict()) == json.dumps(r.to_dict()) and back.fingerprint() == r.fingerprint()
        assert all(isinstance(f.enabled, bool) for f in r.filters.values())
        for f in r.filters.values():
            assert all(v is None or np.isfinite(v) for v in (f.min, f.max, f.review_min, f.review_max))
        assert 0 <= r.duplicates.near_threshold <= 64 and r.duplicates.policy in recipe.POLICIES
        assert set(r.scope) <= set(recipe.SPLIT_ORDER)
        outcomes["valid"] += 1
    # the grammar exercises both sides
    assert outcomes["valid"] >= 60 and outcomes["invalid"] >= 200, outcomes


# ---- the Quality sidebar: upload, save and the split warning --------------------------------------------------

@pytest.fixture
def subset(tmp_path, fer_sample):
    from conftest import import_and_scan
    from fer_core import decisions

    import_and_scan(tmp_path, fer_sample, "sub")
    return decisions.load_inputs("sub")


def test_sidebar_recipe_errors_and_split_warning(subset):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/2_Quality.py")
    at.run()
    assert not at.exception and not any("rejects" in w.value and "split" in w.value for w in at.sidebar.warning)

    def upload(name: str, data: bytes):
        at.sidebar.file_uploader(key="rup-sub").set_value((name, data, "text/yaml"))
        at.run()
        at.sidebar.button(key="rup-btn-sub").click()
        at.run()
        assert not at.exception, at.exception
        return " ".join(e.value for e in at.error)

    # bad YAML syntax is the person's input: the file and line, not "Unexpected error ... a bug"
    err = upload("broken.yaml", b"name: x\nfilters:\n  sharpness: {min: 3\n  brightness: {}\n")
    assert "'broken.yaml' is not valid YAML (line 4" in err and "Unexpected" not in err
    # a typo: the key path and the closest valid key
    err = upload("typo.yaml", b"format: fer-recipe/1\nfilters:\n  sharpness: {mni: 3}\n")
    assert "filters.sharpness.mni" in err and "did you mean 'min'" in err
    # a valid recipe that rejects most of train and test: the summary warns
    r = recipe.default_recipe(subset.signals, name="dark")
    r = r.replace(scope=["train", "test"])
    r = r.with_filter("brightness", enabled=True, min=None, max=1.0)
    assert upload("dark.yaml", r.to_yaml().encode()) == ""
    warns = [w.value for w in at.sidebar.warning]
    assert any("of the **train** split" in w for w in warns) and any("of the **test** split" in w for w in warns)
    assert not any("**val** split" in w for w in warns)
    # a bad recipe name says so (not "dataset name"), and nothing is written
    at.sidebar.text_input(key="rsave-sub").input("strict\n")
    at.sidebar.button(key="rsave-btn-sub").click()
    at.run()
    err = " ".join(e.value for e in at.error)
    assert "is not a valid recipe name" in err and "dataset" not in err
    from fer_core import drafts
    assert drafts.list_recipes("sub") == []     # no saved recipe (the unsaved upload is only the auto-saved draft)


def test_schema_covers_every_recipe_field():
    """A field added to a recipe dataclass without its schema entry would make every saved recipe carrying it
    fail as an 'unknown key': the two lists must stay the same."""
    import dataclasses

    from fer_core import recipe as r

    for dc, schema in ((r.Filter, r._FilterSchema), (r.Duplicates, r._DuplicatesSchema),
                       (r.LabelPolicy, r._LabelsSchema), (r.Recipe, r._RecipeSchema)):
        fields = {f.name for f in dataclasses.fields(dc)}
        assert fields <= set(schema.model_fields), (dc.__name__, fields - set(schema.model_fields))
        saved = set(r.Recipe().to_dict()) if dc is r.Recipe else fields
        assert set(schema.model_fields) <= fields | saved, (dc.__name__, set(schema.model_fields) - fields - saved)
