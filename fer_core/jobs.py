"""Background jobs: long work (download, scan, training) runs as a ``python -m fer_core`` subprocess.

The subprocess survives page switches, reloads and widget clicks; it writes its progress to
``cache/jobs/<id>/progress.json`` (replaced atomically) and its output to ``log.txt``. The UI holds
the :class:`JobManager` in ``st.cache_resource`` and polls. Cancelling touches a flag file and sends
SIGTERM to the job's process group; the job stops at its next check and marks itself cancelled
(a job that does not stop within the grace period is killed and marked cancelled here).

Secrets (Kaggle keys) travel to the child in its environment only, never on its command line.
Jobs with the same ``exclusive`` key run one at a time; later ones wait, marked "queued".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fer_core.config import PROJECT_ROOT, cache_root
from fer_core.fsutil import atomic_write_json, pid_alive, process_started
from fer_core.store_paths import jobs_root

_SECRET_ENV = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN")
TERMINAL = ("done", "failed", "cancelled")


@dataclass
class JobStatus:
    id: str
    kind: str
    dataset: str | None
    state: str                     # starting | queued | running | done | failed | cancelled
    stage: str | None = None
    fraction: float | None = None
    done: float = 0
    total: float | None = None
    unit: str = ""
    message: str = ""
    error: dict | None = None
    created: float = 0.0
    updated: float = 0.0
    info: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    label: str = ""
    rate: float | None = None      # units of the current stage per second, since the stage started
    eta_s: float | None = None     # seconds left for the whole job (its slowest unfinished stage), when known

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def throughput(stages: dict, stage: str | None, now: float | None = None) -> tuple[float | None, float | None]:
    """(rate of ``stage`` in its units per second, seconds left for the job) from the progress file's stage
    timing. The job's ETA is the longest of its unfinished stages' (an A/B: the runs left, not just this run's
    epochs); a stage that reports its own ETA (training) is taken at its word."""
    now = now or time.time()

    def one(ev: dict) -> tuple[float | None, float | None]:
        if "t0" not in ev or ev.get("total") is None:
            return None, None
        did, el = ev.get("done", 0) - ev.get("done0", 0), now - ev["t0"]
        r = did / el if did > 0 and el > 0 else None
        left = ev["total"] - ev.get("done", 0)
        eta = (ev.get("extra") or {}).get("eta_s")
        return r, eta if eta is not None else (left / r if r else None)

    rate = one(stages[stage])[0] if stage in stages else None
    etas = [one(ev)[1] for k, ev in stages.items()
            if k != "waiting" and ev.get("total") is not None and ev.get("done", 0) < ev["total"]]
    etas = [e for e in etas if e is not None]
    return rate, (max(etas) if etas else None)


class JobManager:
    def __init__(self, cache=None):
        self.cache = cache
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def root(self) -> Path:
        """Resolved on each use, so a long-lived manager follows $FER_CACHE_DIR."""
        return jobs_root(self.cache)

    # -- start
    def start(self, kind: str, argv: list[str], dataset: str | None = None, env: dict | None = None,
              exclusive: str | None = None, label: str = "") -> str:
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:6]}"
        jdir = self.root / job_id
        jdir.mkdir(parents=True)
        child_env = {k: v for k, v in os.environ.items() if not (env and k in _SECRET_ENV)}
        child_env.update(env or {})
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + child_env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "fer_core", "--quiet", "--cache", str(cache_root(self.cache)),
               "--progress-json", str(jdir / "progress.json"), "--cancel-file", str(jdir / "cancel")]
        if exclusive:
            cmd += ["--exclusive", exclusive]
        cmd += argv
        meta = {"id": job_id, "kind": kind, "dataset": dataset, "argv": argv, "label": label,
                "created": time.time(), "exclusive": exclusive}
        atomic_write_json(jdir / "progress.json", {"state": "starting", "stages": {}, "updated": time.time()})
        with open(jdir / "log.txt", "ab") as log:
            proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), env=child_env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        meta["pid"] = proc.pid
        # the child's own creation time, not "created" (written before the spawn): pid_alive compares the two
        meta["pid_started"] = process_started(proc.pid) or time.time()
        atomic_write_json(jdir / "job.json", meta)
        self._procs[job_id] = proc
        return job_id

    def submit(self, spec: "JobSpec") -> str:
        """Start the job ``spec`` describes (see the typed starters at the end of this module)."""
        return self.start(spec.kind, list(spec.argv), dataset=spec.dataset, env=spec.env, exclusive=spec.exclusive,
                          label=spec.label)

    # -- read
    def _meta(self, job_id: str) -> dict:
        return json.loads((self.root / job_id / "job.json").read_text())

    def status(self, job_id: str) -> JobStatus:
        jdir = self.root / job_id
        meta = self._meta(job_id)
        try:
            prog = json.loads((jdir / "progress.json").read_text())
        except (OSError, ValueError):
            prog = {"state": "starting", "stages": {}}
        proc = self._procs.get(job_id)
        if proc is not None:
            proc.poll()  # reaps the child when it has exited
        state = prog.get("state", "running")
        if state not in TERMINAL and not pid_alive(meta["pid"], meta.get("pid_started")):
            # the process is gone without saying how it ended
            cancelled = (jdir / "cancel").exists()
            state = "cancelled" if cancelled else "failed"
            err = None if cancelled else {"code": "died", "message": "The job's process ended unexpectedly.",
                                          "hint": "See the job log; run it again (downloads and scans resume)."}
            prog.update({"state": state, "error": err, "updated": time.time()})
            atomic_write_json(jdir / "progress.json", prog)
        st = JobStatus(job_id, meta["kind"], meta.get("dataset"), state, created=meta["created"],
                       updated=prog.get("updated", 0), error=prog.get("error"), info=prog.get("info") or {},
                       stages=prog.get("stages") or {}, label=meta.get("label") or "")
        stage = prog.get("stage")
        if stage and stage in st.stages:
            ev = st.stages[stage]
            st.stage, st.fraction, st.done, st.total = stage, ev.get("fraction"), ev.get("done", 0), ev.get("total")
            st.unit, st.message = ev.get("unit", ""), ev.get("message", "")
        if st.state == "running" and prog.get("queued"):
            st.state = "queued"
        if st.state == "running":
            st.rate, st.eta_s = throughput(st.stages, stage)
        elif st.state == "done":
            self._measure(jdir, meta, prog)
        return st

    def _measure(self, jdir: Path, meta: dict, prog: dict) -> None:
        """Once per finished job: its rate goes into the estimates history (fer_core.estimates). The flag file
        is created first and exclusively, so two sessions reading the same job record it once."""
        try:
            os.close(os.open(jdir / "measured", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except OSError:   # measured already (FileExistsError), or the folder is not writable
            return
        try:
            from fer_core import estimates

            entry = estimates.measure(meta, prog, self.cache)
            if entry:
                estimates.record(entry, self.cache)
        except Exception:  # noqa: BLE001 - an estimate is a nicety: never break reading a job's status
            pass

    def list(self, kind: str | tuple | None = None, dataset: str | None = None, limit: int = 50) -> list[JobStatus]:
        kinds = (kind,) if isinstance(kind, str) else kind
        out = []
        for jdir in sorted(self.root.iterdir(), reverse=True):
            if not (jdir / "job.json").exists():
                continue
            try:
                meta = self._meta(jdir.name)
            except (OSError, ValueError):
                continue
            if kinds and meta["kind"] not in kinds or dataset and meta.get("dataset") != dataset:
                continue
            out.append(self.status(jdir.name))
            if len(out) >= limit:
                break
        return out

    def active(self, kind: str | tuple | None = None, dataset: str | None = None) -> list[JobStatus]:
        return [j for j in self.list(kind, dataset) if not j.finished]

    def log(self, job_id: str, tail: int = 4000) -> str:
        try:
            data = (self.root / job_id / "log.txt").read_bytes()
        except OSError:
            return ""
        return data[-tail:].decode(errors="replace")

    # -- control
    def cancel(self, job_id: str, grace: float = 10.0) -> JobStatus:
        jdir = self.root / job_id
        (jdir / "cancel").touch()
        pid = self._meta(job_id)["pid"]
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.time() + grace
        while time.time() < deadline:
            st = self.status(job_id)
            if st.finished:
                return st
            time.sleep(0.1)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        time.sleep(0.2)
        return self.status(job_id)

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.2) -> JobStatus:
        deadline = time.time() + timeout
        while True:
            st = self.status(job_id)
            if st.finished or time.time() > deadline:
                return st
            time.sleep(poll)


# ---- the job kinds: one typed starter each ---------------------------------------------------------------
# The pages (and anything else that starts a job) describe the job with one of these; the command line it runs is
# built here only, and tests/test_jobs.py parses every one with the CLI's own parser. ``exclusive`` says what may
# not run at the same time (the dataset's writer lock is taken by the engine as well).

@dataclass(frozen=True)
class JobSpec:
    kind: str
    argv: tuple[str, ...]
    dataset: str | None
    exclusive: str | None
    label: str = ""
    env: dict | None = field(default=None, compare=False, repr=False)   # secrets travel here, never in argv


def _opt(flag: str, value) -> list[str]:
    return [] if value is None else [flag, str(value)]


def download_job(what: str, name: str, env: dict | None = None) -> JobSpec:
    return JobSpec("download", ("download", what, "--name", name), name, f"dataset-{name}", env=env)


def import_job(source: str | os.PathLike, name: str, spec: str | None = None,
               within: tuple[str | os.PathLike, ...] = ()) -> JobSpec:
    argv = ["import", str(source), "--name", name, *_opt("--spec", spec)]
    argv += [a for r in within for a in ("--within", str(r))]   # the job confines the path again
    return JobSpec("import", tuple(argv), name, f"dataset-{name}")


def scan_job(name: str, signals: tuple[str, ...] | None = None, kind: str = "scan", engine: str | None = None,
             address: str | None = None) -> JobSpec:
    """``engine``/``address``: where the scan runs (default: $FER_ENGINE / $RAY_ADDRESS, which the job inherits)."""
    argv = ["scan", name] + (["--signals", ",".join(signals)] if signals else [])
    argv += [*_opt("--engine", engine), *_opt("--address", address)]
    return JobSpec(kind, tuple(argv), name, f"dataset-{name}")


def export_job(name: str, recipe_file: str | os.PathLike, export_name: str, zip_: bool = True, csv: bool = False,
               clahe: tuple[float, int] | None = None) -> JobSpec:
    argv = ["export", name, "--recipe", str(recipe_file), "--export-name", export_name]
    argv += (["--zip"] if zip_ else []) + (["--csv"] if csv else [])
    if clahe is not None:
        argv += ["--clahe", "--clahe-clip", str(clahe[0]), "--clahe-tile", str(clahe[1])]
    return JobSpec("export", tuple(argv), name, f"export-{export_name}")


def evaluate_job(name: str, run_id: str, targets: tuple[str, ...]) -> JobSpec:
    """Evaluate a saved model on other test splits (no retraining)."""
    argv = ["evaluate", run_id, "--dataset", name] + [a for t in targets for a in ("--on", t)]
    return JobSpec("evaluate", tuple(argv), name, f"train-{name}")


def link_job(a: str, b: str) -> JobSpec:
    """Link two datasets holding the same faces (writes both sides' link and the votes through it)."""
    x, y = sorted((a, b))
    return JobSpec("link", ("link", x, y), a, f"link-{x}-{y}")


def map_job(name: str, method: str = "umap") -> JobSpec:
    return JobSpec("map", ("map", name, "--method", method), name, f"map-{name}")


def train_job(name: str, run_id: str, preset: str, seed: int, balance: str = "none",
              recipe_file: str | os.PathLike | None = None, export_dir: str | os.PathLike | None = None,
              augment: str | None = None, label: str = "", eval_on: tuple[str, ...] = (),
              prior: str = "kept") -> JobSpec:
    argv = ["train", name, "--preset", preset, "--seed", str(int(seed)), "--balance", balance,
            *_opt("--recipe", recipe_file), *_opt("--export", export_dir), *_opt("--augment", augment),
            "--run-id", run_id, "--prior", prior]
    argv += [a for t in eval_on for a in ("--eval-on", t)]
    return JobSpec("train", tuple(argv), name, f"train-{name}", label=label)


def labels_job(name: str, folds: int, epochs: int, seed: int, engine: str | None = None,
               address: str | None = None) -> JobSpec:
    return JobSpec("labels", ("labels", name, "--folds", str(int(folds)), "--epochs", str(int(epochs)),
                              "--seed", str(int(seed)), *_opt("--engine", engine), *_opt("--address", address)),
                   name, f"train-{name}")


def ab_job(name: str, recipe_file: str | os.PathLike | None = None, preset: str | None = None,
           seeds: int | None = None, relabel_arm: bool = True, baseline: str | None = None,
           resume: str | None = None, arms: tuple[str, ...] | None = None, eval_on: tuple[str, ...] = (),
           budget: str | None = None) -> JobSpec:
    if resume:
        argv = ["ab", name, "--resume", resume]
    else:
        argv = ["ab", name, "--recipe", str(recipe_file), *_opt("--preset", preset), *_opt("--seeds", seeds)]
        argv += ([] if relabel_arm else ["--no-relabel-arm"]) + _opt("--baseline", baseline)
        argv += _opt("--arms", ",".join(arms) if arms else None) + _opt("--budget", budget)
    argv += [a for t in eval_on for a in ("--eval-on", t)]
    return JobSpec("ab", tuple(argv), name, f"train-{name}")


def collection_job(name: str, members: tuple[str, ...] | None = None, recipes: dict[str, str] | None = None,
                   contempt: str | None = None) -> JobSpec:
    """Create (with ``members``: writes the definition) and build a collection, or rebuild it (no ``members``)."""
    if members:
        argv = ["collection", "create", name, "--members", ",".join(members), *_opt("--contempt", contempt)]
        argv += [a for m, r in (recipes or {}).items() for a in ("--recipe", f"{m}={r}")]
    else:
        argv = ["collection", "build", name]
    return JobSpec("collection", tuple(argv), name, f"dataset-{name}")
