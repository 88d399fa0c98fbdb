"""Background jobs: a subprocess with progress on disk, survives its starter, cancels cleanly."""

from __future__ import annotations

import time

from fer_core import datasets
from fer_core.jobs import JobManager
from waiting import wait_job


def test_download_job_reports_progress_and_finishes(fake_kaggle):
    jm = JobManager()
    jid = jm.start("download", ["download", "fer2013"], dataset="fer2013",
                   env={"KAGGLE_USERNAME": fake_kaggle.username, "KAGGLE_KEY": fake_kaggle.key})
    seen_stages, fractions = set(), []
    deadline = time.time() + 300
    while time.time() < deadline:
        st = jm.status(jid)
        if st.stage:
            seen_stages.add(st.stage)
            fractions.append((st.stage, st.fraction))
        if st.finished:
            break
        time.sleep(0.1)
    assert st.state == "done", jm.log(jid)
    assert {"download", "catalog"} <= seen_stages
    assert "35,887 images" in st.info["summary"]
    assert datasets.list_datasets() == ["fer2013"]
    # the key went through the environment only, never onto the command line or into job files
    job_dir = jm.root / jid
    for f in job_dir.iterdir():
        assert fake_kaggle.key not in f.read_text(errors="replace")


def test_cancel_marks_cancelled_and_registers_nothing(fake_kaggle):
    fake_kaggle.drop_after = None
    jm = JobManager()
    jid = jm.start("download", ["download", "fer2013"], dataset="fer2013",
                   env={"KAGGLE_USERNAME": fake_kaggle.username, "KAGGLE_KEY": fake_kaggle.key})
    deadline = time.time() + 120
    while time.time() < deadline and jm.status(jid).stage not in ("extract", "catalog"):
        time.sleep(0.05)
    st = jm.cancel(jid)
    assert st.state == "cancelled", jm.log(jid)
    assert datasets.list_datasets() == []
    assert not list(datasets.dataset_dir("fer2013").glob(".staging-*"))


def test_failed_job_carries_the_error(fake_kaggle):
    jm = JobManager()
    jid = jm.start("download", ["download", "fer2013"], dataset="fer2013",
                   env={"KAGGLE_USERNAME": fake_kaggle.username, "KAGGLE_KEY": "nope"})
    st = wait_job(jm, jid)
    assert st.state == "failed"
    assert st.error["code"] == "auth" and "HTTP 401" in st.error["message"]


def test_killed_job_is_reported_failed_not_running(tmp_path, fer_sample):
    import os
    import signal

    from conftest import zip_tree
    z = zip_tree(fer_sample, tmp_path / "s.zip")
    jm = JobManager()
    jid = jm.start("import", ["import", str(z), "--name", "k"], dataset="k")
    pid = jm._meta(jid)["pid"]
    os.killpg(pid, signal.SIGKILL)
    st = wait_job(jm, jid)
    assert st.state == "failed" and "ended unexpectedly" in st.error["message"]


def test_exclusive_jobs_queue(tmp_path, fer_sample):
    """A job keyed dataset-<name> waits ("queued") on the dataset's writer lock, the one the engine and the CLI take."""
    from conftest import zip_tree
    from fer_core import locks

    z = zip_tree(fer_sample, tmp_path / "s.zip")
    jm = JobManager()
    with locks.dataset_lock("q", "scan"):  # stands for a running writer of the same dataset
        b = jm.start("import", ["import", str(z), "--name", "q"], dataset="q", exclusive="dataset-q")
        deadline = time.time() + 60
        while time.time() < deadline and jm.status(b).state != "queued":
            time.sleep(0.05)
        assert jm.status(b).state == "queued"
        assert datasets.list_datasets() == []
    st = wait_job(jm, b)
    assert st.state == "done" and datasets.list_datasets() == ["q"]


def test_every_job_starter_builds_a_command_line_the_cli_accepts(tmp_path):
    """The pages start jobs only through fer_core.jobs' typed starters; each one's argv parses with the CLI's own
    parser into the command of its kind, with the values it was given (a page can no longer build a command line
    the CLI rejects or reads differently)."""
    from fer_core import cli, jobs

    r = tmp_path / "r.yaml"
    cases = [
        (jobs.download_job("fer2013", "f2", env={"KAGGLE_KEY": "k"}), "cmd_download", {"what": "fer2013", "name": "f2"}),
        (jobs.import_job(tmp_path / "a.zip", "imp", "fer2013", within=(tmp_path,)), "cmd_import",
         {"path": str(tmp_path / "a.zip"), "name": "imp", "spec": "fer2013", "within": [str(tmp_path)]}),
        (jobs.scan_job("d"), "cmd_scan", {"name": "d", "signals": "quality,duplicates"}),
        (jobs.scan_job("d", ("faces", "embeddings"), kind="faces"), "cmd_scan", {"signals": "faces,embeddings"}),
        (jobs.export_job("d", r, "ex", csv=True, clahe=(2.5, 4)), "cmd_export",
         {"recipe": str(r), "export_name": "ex", "zip": True, "csv": True, "clahe": True, "clahe_clip": 2.5,
          "clahe_tile": 4}),
        (jobs.map_job("d", "pca"), "cmd_map", {"method": "pca"}),
        (jobs.train_job("d", "rid", "smoke", 3, "sampler", recipe_file=r, augment="light"), "cmd_train",
         {"run_id": "rid", "preset": "smoke", "seed": 3, "balance": "sampler", "recipe": str(r), "augment": "light",
          "export": None}),
        (jobs.train_job("d", "rid", "standard", 0, export_dir=tmp_path), "cmd_train",
         {"export": str(tmp_path), "recipe": None, "augment": None, "prior": "kept"}),
        (jobs.train_job("d", "rid", "standard", 0, recipe_file=r, prior="source"), "cmd_train",
         {"recipe": str(r), "prior": "source"}),
        (jobs.labels_job("d", 5, 3, 1), "cmd_labels", {"folds": 5, "epochs": 3, "seed": 1}),
        (jobs.ab_job("d", r, "smoke", 2, relabel_arm=False, baseline="ab1"), "cmd_ab",
         {"recipe": str(r), "preset": "smoke", "seeds": 2, "no_relabel_arm": True, "baseline": "ab1"}),
        (jobs.ab_job("d", resume="ab2"), "cmd_ab", {"resume": "ab2", "recipe": None, "budget": None}),
        (jobs.ab_job("d", r, "standard", 3, budget="steps"), "cmd_ab", {"budget": "steps", "baseline": None}),
    ]
    parser = cli.build_parser()
    for spec, fn, want in cases:
        ns = parser.parse_args(list(spec.argv))
        assert ns.fn.__name__ == fn, spec
        assert {k: getattr(ns, k) for k in want} == want, spec
        assert spec.exclusive == {"export": "export-ex"}.get(spec.kind, f"{spec.exclusive.split('-')[0]}-{spec.dataset}")
        assert spec.exclusive.split("-")[0] == {"download": "dataset", "import": "dataset", "scan": "dataset",
                                                "faces": "dataset", "export": "export", "map": "map"}.get(spec.kind, "train")
    assert "KAGGLE_KEY" not in " ".join(cases[0][0].argv) and cases[0][0].env == {"KAGGLE_KEY": "k"}
    # the jobs that write a dataset share its key with the engine's writer lock (they queue behind each other)
    assert {s.exclusive for s, *_ in cases[:4]} == {"dataset-f2", "dataset-imp", "dataset-d"}
