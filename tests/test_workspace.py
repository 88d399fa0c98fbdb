"""The per-dataset facade (issue 16): a notebook's whole path on a real FER2013 subset, and the same answers as
the modules it fronts."""

from __future__ import annotations

import pytest

from conftest import import_and_scan
from fer_core import decisions, recipe, review, store
from fer_core.errors import InvalidInput
from fer_core.workspace import Workspace


def test_a_notebook_path_through_one_dataset(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "nb", scan=False)
    ws = Workspace("nb")
    assert not ws.status()["quality"]["complete"]
    res = ws.scan(workers=1)
    assert res.computed["quality"] == len(fer_sample) and ws.status()["duplicates"]["complete"]
    assert ws.paths.family("quality", 1) == store.family_dir(ws.dataset, "quality")
    inputs = ws.inputs()
    rec = ws.default_recipe(inputs=inputs)
    sig = inputs.signals
    first = sig.loc[sig["split"] == "train", "id"].iat[0]
    ws.review.set(first, "reject")                                     # a person's override counts...
    dec = ws.decide(rec, inputs=inputs)
    assert not dec.loc[dec["id"] == first, "keep"].item()
    plain = decisions.run(inputs, rec, review.store_for(ws.dataset).overrides())
    assert dec.equals(plain)
    assert ws.decide(rec, overrides=False, inputs=inputs).equals(decisions.run(inputs, rec, None))   # ...unless off
    assert "kept" in ws.summary(dec, inputs)
    rec = rec.replace(name="mine")
    ws.save_recipe(rec)
    path = decisions.recipes_dir("nb") / "mine.yaml"
    assert ws.recipes() == ["mine"] and ws.recipe("mine").to_dict() == recipe.Recipe.load(path).to_dict()
    assert ws.recipe(path).to_dict() == ws.recipe(str(path)).to_dict()     # or by path
    with pytest.raises(InvalidInput, match="not a valid recipe name"):
        ws.recipe("Mine Two")
    out = ws.export(rec, "nb-clean")
    assert out.manifest["counts"]["after_total"] == int(dec["keep"].sum())
    assert [e["name"] for e in ws.exports()] == ["nb-clean"]


def test_a_file_being_written_is_not_listed_as_an_ab(tmp_path, fer_sample):
    """fsutil.atomic_path keeps the target's suffix on its temporary file (np.save, keras need it): a listing
    by suffix must skip those hidden files, or an A/B being saved (or left by a killed writer) shows twice."""
    import json

    from fer_core.train import ab

    import_and_scan(tmp_path, dict(list(fer_sample.items())[:10]), "abl", scan=False)
    root = ab.ab_root("abl")
    (root / "ab1.json").write_text(json.dumps({"ab_id": "ab1", "created": 1.0}))
    (root / ".ab1.json.1a2b3c4d.tmp.json").write_text(json.dumps({"ab_id": "ab1", "created": 1.0}))
    assert [d["ab_id"] for d in ab.list_ab("abl")] == ["ab1"]
