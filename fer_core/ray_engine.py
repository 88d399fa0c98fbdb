"""The scan's image batches and the label folds on a Ray cluster, with the same results as the local engine.

Two engines run the per-image work of a scan (``store.scan(..., engine=...)``, ``scan NAME --engine``,
``FER_ENGINE``):

- ``local`` (the default; a fresh clone needs nothing else): a fork process pool on this machine;
- ``ray``: Ray Data. ``store._scan_phase`` keeps all of its bookkeeping (which ids each family misses, the
  batches, the part files, consolidation, the derived tables, ``meta.json`` last) and hands only "run these
  batches" to :func:`run_batches`. The batches become one Ray Data row (and one block) each, and flow through
  one ``map_batches`` stage per *pool*, each an actor pool (``ActorPoolStrategy``) whose actors load their
  model once: ``image`` (decode + quality + hashes), ``faces`` (YuNet), ``embeddings`` (SFace, onnxruntime with
  one intra-op thread per actor), ``faces_mtcnn`` (TensorFlow). The first stage decodes each image once; the
  decoded batch travels to the next stage inside the row. The driver consumes finished batches as they arrive
  and writes each as a part file, exactly as with the local pool: a killed driver resumes from them, a lost
  actor is restarted by Ray and its batch retried (Ray Data's actor defaults: ``max_restarts=-1``,
  ``max_task_retries=-1``). The batches are the local engine's own batches, so each family computes over the
  same images in the same groups and the tables are identical.

The whole-table steps (duplicate pairs, kNN, groups) stay on the driver: they need the whole table, which the
driver already holds to write it (bench/RESULTS.md).

Where the workers run on other machines, every node must see the cache (the images behind
``cache/datasets/<name>/data``) at the same path, e.g. an NFS mount with the same ``FER_CACHE_DIR``, and run the
same pinned packages (requirements.txt); ``fer_core`` itself is shipped to the workers with the job
(``runtime_env`` ``py_modules``).

``ray`` is imported only here and only when the Ray engine is chosen: the app and the CLI start without it.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fer_core import config
from fer_core.errors import DatasetError, FerError, InvalidInput, NetworkError

ENGINES = ("local", "ray")
RAY_VERSION = "2.60.0"
_INSTALL_HINT = (f"Install it (`pip install 'ray[data]=={RAY_VERSION}'`, pinned in requirements.txt) or use the "
                 "local engine (`--engine local`, FER_ENGINE=local).")

# Per-image families → (pool, CPUs per actor, can use a GPU). Families of one pool share its actors; a family
# not listed runs in the "image" pool when it needs no model, in a pool of its own when it does.
POOLS = {
    "quality": ("image", 1.0, False),
    "duplicates": ("image", 1.0, False),
    "faces": ("faces", 1.0, False),          # cv2's YuNet: CPU only in opencv-python-headless
    "embeddings": ("embeddings", 1.0, True),  # onnxruntime; CUDA where the node has onnxruntime-gpu
    "faces_mtcnn": ("faces_mtcnn", 1.0, True),  # TensorFlow
}


def engine_of(engine: str | None) -> str:
    """The engine to use: ``engine`` or ``$FER_ENGINE`` or ``local``; refuses an unknown name."""
    e = (engine or config.engine()).strip().lower()
    if e not in ENGINES:
        raise InvalidInput(f"Unknown engine '{e}'.", f"Use one of: {', '.join(ENGINES)}.")
    return e


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401 - ray without its data extra has no ray.data
    except ImportError as exc:
        raise InvalidInput(f"The Ray engine needs the 'ray[data]' package, which is not installed ({exc}).",
                           _INSTALL_HINT) from None
    return ray


def runtime_env() -> dict:
    """What every Ray worker needs from this driver: the ``fer_core`` package (shipped with the job) and the
    FER_* settings (model paths, the cache)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("FER_")}
    env.setdefault("FER_ORT_THREADS", "1")
    return {"py_modules": [str(Path(__file__).resolve().parent)], "env_vars": env,
            "excludes": ["__pycache__", "*.pyc"]}


def _quiet_ray_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False           # the engine reports progress itself (progress.json, bars)
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def connected(address: str | None = None, **init_kw):
    """Ray connected for the duration: ``address`` (``ray://HOST:10001``, ``HOST:PORT``, ``auto``) or
    ``$RAY_ADDRESS``, else a local Ray started here (and stopped at the end). An already connected session (a
    notebook's, the tests') is used as it is and left running."""
    ray = _ray()
    if ray.is_initialized():
        _quiet_ray_data()
        yield ray
        return
    address = address or config.ray_address()
    _reachable(address)
    kw = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
          "runtime_env": runtime_env(), **init_kw}
    try:
        ray.init(address=address, **kw)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "(a local Ray)"
        raise NetworkError(f"Cannot reach the Ray cluster {where}: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                           "Check --address / RAY_ADDRESS (ray://HOST:10001 for Ray Client, HOST:6379 or auto on a "
                           "cluster node), that the cluster runs Ray " + RAY_VERSION + ", or leave the address out "
                           "to start a local Ray.") from None
    try:
        _quiet_ray_data()
        yield ray
    finally:
        ray.shutdown()


def _reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at (``ray.init`` would retry for minutes)."""
    if not address or address == "auto" or address.startswith("local"):
        return
    import socket

    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 10001)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        raise NetworkError(f"Cannot reach the Ray cluster at {address}: {exc}.",
                           "Start it (`ray start --head`) or check --address / RAY_ADDRESS (ray://HOST:10001 for "
                           "Ray Client, HOST:6379 or auto on a cluster node), or leave the address out to start a "
                           "local Ray.") from None


# ---- the scan's batches ------------------------------------------------------------------------------------

def pool_of(family: str) -> tuple[str, float, bool]:
    if family in POOLS:
        return POOLS[family]
    from fer_core.signals.base import get_family

    return ("image", 1.0, False) if not get_family(family).model else (family, 1.0, False)


def stages(fams: list[str]) -> list[list[str]]:
    """The families of one scan phase grouped into pools, the model-free ``image`` pool first (it decodes)."""
    groups: dict[str, list[str]] = {}
    for f in fams:
        groups.setdefault(pool_of(f)[0], []).append(f)
    order = sorted(groups, key=lambda p: p != "image")
    return [groups[p] for p in order]


class _StageWorker:
    """One actor of a pool: loads its families' models once, then runs them over whole batches.

    A row's ``payload`` is, on the way in to the first stage, the local engine's job tuple
    ``(batch_no, items, families, extra)``; between stages ``(batch_no, ImageBatch, families, results)``; out of
    the last stage ``(batch_no, results, ok)``, what ``store._work`` returns."""

    def __init__(self, families: list[str], first: bool, last: bool, images: str, env: dict, threads: int = 1,
                 gpu: bool = False):
        os.environ.update(env)
        os.environ["FER_ORT_THREADS"] = str(threads)
        import cv2

        cv2.setNumThreads(threads)
        from fer_core.signals.base import WORK_SIZE, ImageBatch, get_family

        self.images = images
        self.first, self.last = first, last
        self.fams = {f: get_family(f) for f in families}
        if gpu and "embeddings" in self.fams:
            _embeddings_on_gpu(threads)
        # load every model now (once per actor), not inside the first batch
        warm = ImageBatch(["warm-up"], np.zeros((1, WORK_SIZE, WORK_SIZE), np.uint8), np.ones(1, bool), [""],
                          np.zeros(1, np.uint64), np.full(1, WORK_SIZE), np.full(1, WORK_SIZE))
        for fam in self.fams.values():
            fam.compute(warm)

    def __call__(self, batch: dict) -> dict:
        from fer_core.signals.decode import decode_batch

        if self.first and not os.path.isdir(self.images):
            raise DatasetError(f"This Ray node ({os.uname().nodename}) cannot see the images at {self.images}.",
                               "Every node must mount the cache at the same path (FER_CACHE_DIR on a shared "
                               "filesystem).")
        out = []
        for blob in batch["payload"]:
            state = pickle.loads(blob)
            if self.first:
                b, items, fam_b, extra = state
                img = decode_batch(items)
                img.extra = extra
                results = {}
            else:
                b, img, fam_b, results = state
            for f in fam_b:
                if f in self.fams:
                    results[f] = {"id": np.array(img.ids, dtype=object), **self.fams[f].compute(img)}
            state = (b, results, img.ok) if self.last else (b, img, fam_b, results)
            out.append(pickle.dumps(state, protocol=5))
        return {"b": np.asarray(batch["b"]), "payload": np.array(out, dtype=object)}


def _embeddings_on_gpu(threads: int) -> None:
    """Put the SFace session on CUDA where this node's onnxruntime has it (onnxruntime-gpu); else stay on CPU."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        logging.getLogger(__name__).warning("no CUDA in this node's onnxruntime: embeddings run on its CPU")
        return
    from fer_core.models import fp32_model
    from fer_core.signals import embeddings

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    embeddings._SESSION["s"] = ort.InferenceSession(str(fp32_model("sface")), so,
                                                     providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def _check_images_visible(ray, images: str, sample: str) -> None:
    @ray.remote(num_cpus=0)
    def can_read(root, path):
        return os.path.isdir(root) and os.access(path, os.R_OK), os.uname().nodename

    ok, node = ray.get(can_read.remote(images, sample))
    if not ok:
        raise DatasetError(f"The Ray workers (node {node}) cannot read the images at {images}.",
                           "Every node must see the cache at the same path: put FER_CACHE_DIR on a shared "
                           "filesystem mounted alike on every node.")


def plan(ray, fams: list[str], n_batches: int, actors: int | None = None, gpus: bool | None = None,
         threads: int = 1) -> list[dict]:
    """One entry per stage: its families and its actor pool (size, CPUs and GPUs per actor)."""
    res = ray.cluster_resources()
    cpus, n_gpus = float(res.get("CPU", 1)), float(res.get("GPU", 0))
    use_gpu = (n_gpus >= 1) if gpus is None else gpus
    st = stages(fams)
    out = []
    for i, group in enumerate(st):
        per = [pool_of(f) for f in group]
        cpu = max(p[1] for p in per) * threads
        gpu = 1.0 if use_gpu and any(p[2] for p in per) else 0.0
        n = actors or max(1, int(cpus // (len(st) * cpu)))
        if gpu:
            n = min(n, max(1, int(n_gpus)))
        out.append({"families": group, "first": i == 0, "last": i == len(st) - 1, "size": max(1, min(n, n_batches)),
                    "num_cpus": cpu, "num_gpus": gpu})
    want = sum(s["size"] * s["num_cpus"] for s in out)
    if want > cpus:  # every pool must fit at once (a stage waiting for CPUs held by the next one never ends)
        for s in out:
            s["num_cpus"] = round(s["num_cpus"] * cpus / want, 3)
    return out


@contextmanager
def run_batches(jobs: list, fams: list[str], images: str, actors: int | None = None, address: str | None = None,
                gpus: bool | None = None, threads: int = 1, stats: dict | None = None):
    """Run the local engine's batch jobs ``(batch_no, items, families, extra)`` on Ray; yields an iterator of
    ``(batch_no, results, ok)`` in the order they finish. Leaving the block (done, cancelled, failed) stops the
    Ray job's actors."""
    t0 = time.time()
    with connected(address) as ray:
        from ray.data import ActorPoolStrategy

        t_conn = time.time()
        if jobs:
            _check_images_visible(ray, images, jobs[0][1][0][1])
        stage_plan = plan(ray, fams, len(jobs), actors, gpus, threads)
        env = {k: v for k, v in os.environ.items() if k.startswith("FER_")}
        rows = [{"b": int(j[0]), "payload": pickle.dumps(j, protocol=5)} for j in jobs]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))  # one batch per block and task
        for s in stage_plan:
            ds = ds.map_batches(
                _StageWorker, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=s["size"]),
                num_cpus=s["num_cpus"], num_gpus=s["num_gpus"],
                fn_constructor_kwargs={"families": s["families"], "first": s["first"], "last": s["last"],
                                       "images": images, "env": env, "threads": threads, "gpu": s["num_gpus"] > 0})
        if stats is not None:
            stats.update({"connect_s": round(t_conn - t0, 2), "stages": stage_plan, "first_batch_s": None})
        # batch_size=None: each output block as it is finished (one batch of the scan per block)
        it = iter(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1))

        def results():
            for block in it:
                if stats is not None and stats.get("first_batch_s") is None:
                    stats["first_batch_s"] = round(time.time() - t0, 2)
                for blob in block["payload"]:
                    yield pickle.loads(blob)

        try:
            yield _unwrapped(results())
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()   # stops the streaming executor: the pools' actors end now, not at garbage collection


def _unwrapped(gen):
    """Ray wraps an error raised in a worker; a FerError (e.g. images not visible) is shown as itself."""
    try:
        yield from gen
    except FerError:
        raise
    except Exception as exc:
        cause = exc
        while cause is not None:
            if isinstance(cause, FerError):
                raise cause from None
            cause = cause.__cause__ or getattr(cause, "cause", None)
        raise


# ---- the label folds ---------------------------------------------------------------------------------------

def _fold_task(fit_fold, x, y, n_classes: int, fold, f: int, cfg, env: dict, tf_threads: int):
    """One CNN fold on a Ray worker: the same code, seed, data and TensorFlow intra-op thread count as the local
    engine's fold on the driver's machine (TF's CPU results depend on that count; measured: 1 thread instead of 2
    moved probabilities by ~1e-5, the same count gives identical ones)."""
    os.environ.update(env)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(tf_threads))
    return fit_fold(x, y, n_classes, fold, f, cfg)


def run_folds(fit_fold, x: np.ndarray, y: np.ndarray, n_classes: int, fold: np.ndarray, todo: list[int], cfg,
              on_done, address: str | None = None, progress=None, cancel=None, threads: int | None = None) -> None:
    """Train the CNN folds ``todo`` as parallel Ray tasks (one GPU each where the cluster has GPUs, else an equal
    share of its CPUs); ``on_done(f, probs)`` runs on the driver as each one finishes (it saves the fold, so a
    killed driver resumes at the folds still missing). Cancel stops the tasks. ``threads``: TensorFlow's intra-op
    threads per fold; by default as many as the local engine would use on this (the driver's) machine, so the
    probabilities are the local engine's (on CPU; a GPU trains in mixed precision and differs slightly).
    ``fit_fold(x, y, n_classes, fold, f, cfg)``: the fold's training (train.labels.fit_fold, handed in so this
    module stays below the training code)."""
    from fer_core.progress import check_cancel, emit

    with connected(address) as ray:
        res = ray.cluster_resources()
        cpus, gpus = float(res.get("CPU", 1)), float(res.get("GPU", 0))
        per_cpu = max(1, int(cpus // len(todo)))
        # the local engine's count: TF_NUM_INTRAOP_THREADS where it is set (TensorFlow reads it), else one per core
        tf_threads = threads or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or len(os.sched_getaffinity(0))
        opts = {"num_cpus": min(per_cpu, cpus), "num_gpus": 1 if gpus >= 1 else 0, "max_retries": 3}
        env = {k: v for k, v in os.environ.items() if k.startswith("FER_")}
        xr, yr, fr = ray.put(x), ray.put(y), ray.put(fold)
        task = ray.remote(_fold_task).options(**opts)
        refs = {task.remote(fit_fold, xr, yr, n_classes, fr, f, cfg, env, tf_threads): f for f in todo}
        k = int(fold.max()) + 1
        emit(progress, "labels:folds", k - len(todo), k, "folds",
             message=f"{len(todo)} folds on Ray ({opts['num_gpus'] and 'a GPU' or f'{per_cpu} CPU'} each)")
        try:
            while refs:
                check_cancel(cancel)
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for r in ready:
                    f = refs.pop(r)
                    try:
                        p = ray.get(r)
                    except Exception as exc:   # noqa: BLE001 - show a FerError raised in the task as itself
                        cause = getattr(exc, "cause", None)
                        raise (cause if isinstance(cause, FerError) else exc) from None
                    on_done(f, p)
        finally:
            for r in refs:
                ray.cancel(r, force=True)
