"""The Ray engine (issue 19): the scan's per-image families through Ray Data actor pools give the local engine's
tables; a lost actor and a killed driver end in complete, identical tables; cancel stops the Ray job; the label
folds as Ray tasks. One local Ray for the whole session (2 CPUs, no dashboard), shut down at the end."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, cli_paused_after
from fer_core import datasets, store
from fer_core.errors import Cancelled, FerError
from fer_core.progress import CancelToken
from fer_core.signals import embeddings as emb_mod

ALL = ["quality", "duplicates", "faces", "embeddings", "faces_mtcnn"]
STAGE_WORKER = "_StageWorker"


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray (2 CPUs, no dashboard) for the session; on teardown, no Ray process of it is left."""
    import psutil
    import ray

    from fer_core import ray_engine

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             runtime_env=ray_engine.runtime_env())
    me = psutil.Process()
    yield ray
    ray.shutdown()
    deadline = time.time() + 30
    while True:
        left = [p for p in me.children(recursive=True) if _is_ray(p)]
        if not left or time.time() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"Ray processes left after shutdown: {[p.name() for p in left]}"


def _is_ray(p) -> bool:
    try:
        cmd = " ".join(p.cmdline())
    except Exception:  # noqa: BLE001 - gone already
        return False
    return any(k in cmd for k in ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard", "ray/_private"))


def _stage_actors(state: str | None = "ALIVE") -> dict:
    from ray._private import state as ray_state

    return {aid: a for aid, a in ray_state.actors().items()
            if STAGE_WORKER in a.get("ActorClassName", "") and (state is None or a["State"] == state)}


def _import_copy(src, name: str, first: int | None = None, tmp=None):
    """The faces fixture's source images (or the ``first`` of them) imported again under another name (same
    content ids)."""
    if first is not None:
        import shutil

        sub = tmp / f"src-{name}"
        for p in sorted(q for q in src.rglob("*") if q.is_file())[:first]:
            (sub / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, sub / p.relative_to(src))
        src = sub
    return datasets.import_dataset(src, name).dataset


def _assert_same(ref: datasets.Dataset, got: datasets.Dataset, fams) -> None:
    """``got``'s tables equal ``ref``'s rows of the same images (per-image values do not depend on the batch)."""
    for f in fams:
        a = store.load_family(ref, f).sort_values("id").reset_index(drop=True)
        b = store.load_family(got, f).sort_values("id").reset_index(drop=True)
        assert len(b) == len(got.catalog) and b["id"].isin(a["id"]).all(), f
        a = a[a["id"].isin(b["id"])].reset_index(drop=True)
        if f == "embeddings":   # float work: the same vectors within tolerance (cosine ≥ 0.9999), same gaps
            for col in ("emb_crop", "emb_aligned"):
                va, vb = emb_mod.from_blob(a[col]), emb_mod.from_blob(b[col])
                has = np.all(np.isfinite(va), axis=1)
                assert (has == np.all(np.isfinite(vb), axis=1)).all(), col
                cos = np.sum(va[has] * vb[has], axis=1) / (np.linalg.norm(va[has], axis=1) * np.linalg.norm(vb[has], axis=1))
                assert cos.min() >= 0.9999, (col, float(cos.min()))
            rest = [c for c in a.columns if c not in ("emb_crop", "emb_aligned")]
            pd.testing.assert_frame_equal(a[rest], b[rest], check_exact=False, rtol=1e-4)
        else:
            pd.testing.assert_frame_equal(a, b)


def test_ray_scan_equals_local_for_every_family(ray_local, faces_store, faces_ws):
    """A few hundred real FER2013 images through every per-image family on Ray (one actor per pool, batches of
    another size than the local scan's) = the local engine's tables, derived tables and default decisions."""
    from fer_core import decisions
    from fer_core.workspace import Workspace

    src_cache, _ = faces_store
    local = datasets.load("faces")
    store.scan("faces", ["faces_mtcnn"], workers=1)                 # the reference: local engine, every family
    got = _import_copy(src_cache / "src", "faces_ray")
    progress = []
    res = store.scan("faces_ray", ALL, workers=1, batch_size=64, engine="ray", progress=progress.append)
    assert all(res.computed[f] == len(local.catalog) for f in ALL), res.computed
    assert {e.stage for e in progress} >= {"scan:quality+duplicates+faces+faces_mtcnn", "scan:embeddings"}
    last = [e for e in progress if e.stage == "scan:embeddings"][-1]
    assert last.done == last.total == len(local.catalog)
    _assert_same(local, got, ALL)
    pd.testing.assert_frame_equal(store.load_derived(local, "duplicates", "pairs"),
                                  store.load_derived(got, "duplicates", "pairs"))
    pa, pb = (store.load_derived(d, "embeddings", "pairs") for d in (local, got))
    assert len(pa) > 0 and (pa[["a", "b"]].to_numpy() == pb[["a", "b"]].to_numpy()).all()
    assert np.allclose(pa["similarity"], pb["similarity"], atol=1e-3)
    for ws in ("faces", "faces_ray"):
        assert store.family_status(ws)["embeddings"]["complete"]
    tables = []
    for name in ("faces", "faces_ray"):
        w = Workspace(name)
        inputs = w.inputs()
        tables.append(decisions.decisions_table(inputs, w.decide(w.default_recipe(inputs=inputs), inputs=inputs)))
    emb_cols = [c for c in tables[0].columns if c in ("class_outlier", "knn_disagree", "nn_similarity")]
    a, b = (t.drop(columns=emb_cols) for t in tables)
    pd.testing.assert_frame_equal(a, b)                                 # the same decisions, reason for reason
    assert (~tables[0]["keep"]).sum() > 0
    assert not _stage_actors(), "the pools' actors should end with the scan"


def test_lost_actor_and_killed_driver_end_in_identical_tables(ray_local, faces_store, faces_ws, tmp_path):
    ray = ray_local
    src_cache, _ = faces_store
    local = datasets.load("faces")
    n = 96   # real FER2013 images of the faces fixture: 6 batches of 16

    # a worker lost mid-scan: the embeddings actor is killed once its first batch is written
    lost = _import_copy(src_cache / "src", "lost", first=n, tmp=tmp_path)
    killed: dict = {}

    def kill_after_first_batch(ev):
        if ev.stage == "scan:embeddings" and ev.done > 0 and not killed:
            (aid, a), = _stage_actors().items()
            from ray._private.worker import global_worker
            handle = global_worker.core_worker.get_actor_handle(ray.ActorID.from_hex(aid))
            ray.kill(handle, no_restart=False)              # as if its process or node died: Ray restarts it
            killed.update(id=aid, pid=a["Pid"], done=ev.done)

    r = store.scan("lost", ["embeddings"], workers=1, batch_size=16, engine="ray", progress=kill_after_first_batch)
    assert killed and killed["done"] < n, "the actor should have been killed mid-scan"
    info = _stage_actors(state=None)[killed["id"]]
    assert info["NumRestarts"] >= 1, "Ray should have restarted the killed actor"
    assert r.computed["embeddings"] == n
    _assert_same(local, lost, ["faces", "embeddings"])

    # a killed driver: the CLI (a second driver on the same cluster) is SIGKILLed after two batches are written
    dead = _import_copy(src_cache / "src", "dead", first=n, tmp=tmp_path)
    store.scan("dead", ["faces"], workers=1)
    gcs = ray.get_runtime_context().gcs_address
    proc = cli_paused_after(tmp_path, ["--quiet", "scan", "dead", "--signals", "embeddings", "--engine", "ray",
                                       "--address", gcs, "--workers", "1", "--batch-size", "16"],
                            "fer_core.store:_write_part", after=2, first_arg_has="/embeddings/")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    parts = store.family_dir(dead, "embeddings") / "parts"
    assert 2 <= len(list(parts.glob("part-*.parquet"))) < -(-n // 16)
    assert not (parts.parent / "table.parquet").exists()
    r = store.scan("dead", ["embeddings"], workers=1, batch_size=16, engine="ray")
    assert r.reused["embeddings"] >= 2 * 16 and r.computed["embeddings"] == n - r.reused["embeddings"]
    _assert_same(local, dead, ["faces", "embeddings"])


def test_cancel_stops_the_ray_job_and_a_local_scan_finishes_it(ray_local, tmp_path, fer_sample):
    from conftest import import_and_scan

    import_and_scan(tmp_path, fer_sample, "ref", workers=1)
    ds = import_and_scan(tmp_path, fer_sample, "cancelled", scan=False)
    token = CancelToken()
    seen = []

    def cancel_after_first(ev):
        if ev.stage == "scan" and ev.done > 0:
            seen.append(len(_stage_actors()))
            token.cancel()

    with pytest.raises(Cancelled):
        store.scan("cancelled", workers=1, batch_size=16, engine="ray", progress=cancel_after_first, cancel=token)
    assert seen and seen[0] == 1, "one actor of the image pool was running"
    deadline = time.time() + 30
    while _stage_actors() and time.time() < deadline:    # the actor is stopped by cancel, not at exit
        time.sleep(0.1)
    assert not _stage_actors(), "cancel should stop the Ray job's actors"
    parts = store.family_dir(ds, "quality") / "parts"
    assert 1 <= len(list(parts.glob("part-*.parquet"))) < -(-len(fer_sample) // 16)
    r = store.scan("cancelled", workers=1, batch_size=16)      # the local engine finishes what Ray began
    assert 0 < r.reused["quality"] < len(fer_sample)
    _assert_same(datasets.load("ref"), datasets.load("cancelled"), ["quality", "duplicates"])


def test_engine_choice_and_errors_say_what_to_do(tmp_path, fer_sample, monkeypatch):
    from conftest import import_and_scan
    from fer_core import jobs, ray_engine

    import_and_scan(tmp_path, dict(list(fer_sample.items())[:20]), "tiny", scan=False)
    with pytest.raises(FerError, match="Unknown engine 'spark'"):
        store.scan("tiny", engine="spark")
    monkeypatch.setenv("FER_ENGINE", "ray")
    assert ray_engine.engine_of(None) == "ray"
    monkeypatch.setenv("FER_ENGINE", "local")
    assert ray_engine.engine_of(None) == "local"
    from fer_core import cli

    parser = cli.build_parser()                            # the app's jobs pass the choice on to the CLI
    ns = parser.parse_args(list(jobs.scan_job("tiny", ("faces",), engine="ray", address="auto").argv))
    assert (ns.fn.__name__, ns.engine, ns.address, ns.signals) == ("cmd_scan", "ray", "auto", "faces")
    ns = parser.parse_args(list(jobs.labels_job("tiny", 2, 1, 0, engine="ray").argv))
    assert (ns.fn.__name__, ns.engine, ns.address, ns.folds) == ("cmd_labels", "ray", None, 2)
    assert parser.parse_args(list(jobs.scan_job("tiny").argv)).engine is None    # default: $FER_ENGINE, else local
    with monkeypatch.context() as m:                       # ray not installed
        m.setitem(sys.modules, "ray", None)
        with pytest.raises(FerError, match="needs the 'ray\\[data\\]' package") as ei:
            store.scan("tiny", engine="ray")
        assert "--engine local" in ei.value.hint
    # nothing listens at the address: a clear error at once (ray.init itself would retry for minutes)
    t = time.time()
    out = subprocess.run([sys.executable, "-m", "fer_core", "--quiet", "scan", "tiny", "--engine", "ray",
                          "--address", "127.0.0.1:9"], env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Cannot reach the Ray cluster at 127.0.0.1:9" in out.stderr, out.stderr[-2000:]
    assert "RAY_ADDRESS" in out.stderr and time.time() - t < 60
    assert not (store.family_dir(datasets.load("tiny"), "quality") / "meta.json").exists()


def test_label_folds_as_ray_tasks_equal_the_local_folds(ray_local, tmp_path, fer_sample):
    """The CNN folds run as parallel Ray tasks, cleanlab on the driver: the same label table as the local engine
    (same seeds, data and TensorFlow thread count), hence the same default decisions."""
    from conftest import import_and_scan
    from fer_core import decisions
    from fer_core.train import labels
    from fer_core.workspace import Workspace

    cfg = labels.LabelsConfig(folds=2, epochs=1, sources=("cnn",))
    for name in ("lab_local", "lab_ray"):
        import_and_scan(tmp_path, fer_sample, name, workers=2)
    labels.compute("lab_local", cfg)
    events = []
    labels.compute("lab_ray", cfg, engine="ray", progress=events.append)
    folds = [e for e in events if e.stage == "labels:folds"]
    assert "2 folds on Ray" in folds[0].message and folds[-1].done == folds[-1].total == 2
    a, b = (store.load_family(datasets.load(n), "labels") for n in ("lab_local", "lab_ray"))
    assert a["label_quality"].notna().sum() == (datasets.load("lab_local").catalog["split"] == "train").sum()
    pd.testing.assert_frame_equal(a, b)
    dec = []
    for name in ("lab_local", "lab_ray"):
        w = Workspace(name)
        inputs = w.inputs()
        dec.append(decisions.decisions_table(inputs, w.decide(w.default_recipe(inputs=inputs), inputs=inputs)))
    pd.testing.assert_frame_equal(dec[0], dec[1])
    assert dec[0]["reasons"].str.contains("label").any()
