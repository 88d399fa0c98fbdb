"""The Ray engine against the local engine on FER2013, on this machine (issue 19).

    python bench/bench_ray.py [--work /tmp/ferray] [--skip-scan] [--skip-embed]

Per family, back to back (paired, the load average printed beside each figure): the local engine (2 worker
processes) and Ray Data with 1 and 2 actors per pool, in one local Ray session (2 CPUs). quality + duplicates on the
full FER2013; faces, MTCNN and embeddings on subsets (embeddings run at ~34 images/s here). Then the Ray overhead
(start, actor pools, scheduling), the driver's own cost per batch, peak RSS of the driver and the Ray workers, and
whether the object store spilled. Then where embedding time goes: FLOPs per image of the SFace graph, the
machine's single-core GEMM rate, the achieved share, and what cheap changes do (graph optimisation level, batch
size, threads, skipping pixel-identical images).

Nothing here asserts a speed; figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from _common import FER_ZIP, ROOT, machine

BENCH_CACHE = Path("/tmp/ferbench/cache/datasets/fer2013")   # full FER2013, imported (read only: hard-linked)


def load() -> str:
    return "load %.2f" % os.getloadavg()[0]


class RssSampler:
    """Peak RSS of this process (the driver) and of the Ray processes under it, sampled every 0.2 s."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()
        self.peak = {"driver": 0, "worker_max": 0, "workers_sum": 0, "ray_system": 0, "local_pool_max": 0,
                     "local_pool_sum": 0}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak["driver"] = max(self.peak["driver"], self.me.memory_info().rss)
                ws, pool, sysm = [], [], 0
                for p in self.me.children(recursive=True):
                    try:
                        name = " ".join(p.cmdline()[:2])
                        rss = p.memory_info().rss
                    except Exception:  # noqa: BLE001 - ended meanwhile
                        continue
                    if "ray::IDLE" in name:          # Ray's idle worker processes: not this run's work
                        continue
                    if "ray::" in name or "default_worker" in name:
                        ws.append(rss)
                    elif any(k in name for k in ("raylet", "gcs_server", "ray/_private", "ray/dashboard", "ray/")):
                        sysm += rss
                    elif p.ppid() == self.me.pid:    # the local engine's fork pool
                        pool.append(rss)
                if ws:
                    self.peak["worker_max"] = max(self.peak["worker_max"], max(ws))
                    self.peak["workers_sum"] = max(self.peak["workers_sum"], sum(ws))
                if pool:
                    self.peak["local_pool_max"] = max(self.peak["local_pool_max"], max(pool))
                    self.peak["local_pool_sum"] = max(self.peak["local_pool_sum"], sum(pool))
                self.peak["ray_system"] = max(self.peak["ray_system"], sysm)
            except Exception:  # noqa: BLE001
                pass
            self._stop.wait(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    def mib(self) -> dict:
        return {k: round(v / 2**20) for k, v in self.peak.items()}


def prepare(work: Path, sizes: dict[str, int]) -> Path:
    """A bench cache: the full FER2013 (hard links to the bench cache's import) and subsets of it."""
    cache = work / "cache"
    os.environ["FER_CACHE_DIR"] = str(cache)
    from fer_core import datasets

    ds_dir = cache / "datasets" / "fer2013"
    if not ds_dir.exists():
        if BENCH_CACHE.exists():
            real = (BENCH_CACHE / "data").resolve()
            ds_dir.mkdir(parents=True)
            subprocess.run(["cp", "-al", str(real), str(ds_dir / real.name)], check=True)
            os.symlink(real.name, ds_dir / "data")
        else:
            datasets.import_dataset(FER_ZIP, "fer2013")
    full = datasets.load("fer2013")
    cat = full.catalog.sort_values("id").reset_index(drop=True)
    for name, n in sizes.items():
        if (cache / "datasets" / name).exists():
            continue
        src = work / f"src-{name}"
        shutil.rmtree(src, ignore_errors=True)
        rng = np.random.default_rng(0)
        for rel in cat["path"].to_numpy()[np.sort(rng.choice(len(cat), n, replace=False))]:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(full.images / rel, src / rel)
        datasets.import_dataset(src, name)
    return cache


def drop(name: str, fam: str) -> None:
    from fer_core import datasets, store

    shutil.rmtree(store.family_dir(datasets.load(name), fam), ignore_errors=True)


def timed_scan(name: str, fams: list[str], engine: str, workers: int, batch: int) -> dict:
    from fer_core import store

    driver = {"s": 0.0, "n": 0}
    real = store._write_part

    def counting(*a, **kw):     # the driver's own work per batch: unpickled result → part file
        t = time.perf_counter()
        out = real(*a, **kw)
        driver["s"] += time.perf_counter() - t
        driver["n"] += 1
        return out

    store._write_part = counting
    try:
        for f in fams:
            drop(name, f)
        ld = load()
        with RssSampler() as rss:
            t = time.perf_counter()
            res = store.scan(name, fams, workers=workers, batch_size=batch, engine=engine)
            dt = time.perf_counter() - t
    finally:
        store._write_part = real
    n = max(res.computed.values())
    return {"seconds": round(dt, 2), "images": n, "rate": round(n / dt, 1), "load": ld, "rss_mib": rss.mib(),
            "driver_write_s": round(driver["s"], 2), "parts": driver["n"]}


def bench_scan(args) -> dict:
    import ray

    from fer_core import ray_engine

    sizes = {"sub4000": args.faces_n, "sub2000": args.mtcnn_n, "sub1000": args.embed_n}
    prepare(Path(args.work), sizes)
    from fer_core import store

    out = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             runtime_env=ray_engine.runtime_env())
    out["ray_init_s"] = round(time.perf_counter() - t, 2)
    # a one-image Ray Data run: what a pool costs with (almost) nothing to compute (actor start + scheduling)
    from fer_core import datasets

    ds = datasets.load("sub1000")
    r0 = ds.catalog.iloc[0]
    job = (0, [(r0["id"], str(ds.images / r0["path"]), int(r0["width"]), int(r0["height"]))], ["quality"], {})
    for fams in (["quality"], ["faces"], ["embeddings"]):
        probe = {}
        t = time.perf_counter()
        with ray_engine.run_batches([(0, job[1], fams, {})], fams, str(ds.images), actors=1, stats=probe) as it:
            list(it)
        out[f"one_image_run_s_{fams[0]}"] = round(time.perf_counter() - t, 2)
    plan = [("quality+duplicates", "fer2013", ["quality", "duplicates"], 1024, []),
            ("faces (YuNet)", "sub4000", ["faces"], 1024, []),
            ("faces_mtcnn", "sub2000", ["faces_mtcnn"], 512, []),
            ("embeddings (SFace)", "sub1000", ["embeddings"], 256, ["faces"])]
    rows = []
    for title, name, fams, batch, needs in plan:
        if needs:
            store.scan(name, needs, workers=2)
        for engine, w in (("local", 2), ("ray", 1), ("ray", 2)):
            r = timed_scan(name, fams, engine, w, batch)
            r.update(family=title, dataset=name, engine=engine, workers=w, batch=batch)
            rows.append(r)
            print(json.dumps(r), flush=True)
    out["scan"] = rows
    try:
        from ray._private.internal_api import memory_summary

        summ = memory_summary(stats_only=True)
        out["object_store"] = [ln.strip() for ln in summ.splitlines() if "pill" in ln or "Plasma" in ln][:6]
    except Exception as exc:  # noqa: BLE001
        out["object_store"] = [f"memory_summary failed: {exc}"]
    spill = list(Path("/tmp/ray").glob("session_latest/ray_spilled_objects*"))
    out["spill_dirs"] = [str(p) for p in spill]
    ray.shutdown()
    return out


def bench_memory(args) -> dict:
    """Peak RSS of the driver, the local pool and the Ray workers on FER2013 (quality + duplicates), and the
    embeddings pool on a subset; whether the object store spilled."""
    import ray

    from fer_core import ray_engine

    prepare(Path(args.work), {"sub1000": args.embed_n})
    from fer_core import store

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             runtime_env=ray_engine.runtime_env())
    rows = []
    store.scan("sub1000", ["faces"], workers=2)
    for name, fams, batch in (("fer2013", ["quality", "duplicates"], 1024), ("sub1000", ["embeddings"], 256)):
        for engine, w in (("local", 2), ("ray", 2)):
            r = timed_scan(name, fams, engine, w, batch)
            r.update(dataset=name, families=fams, engine=engine, workers=w)
            rows.append(r)
            print(json.dumps(r), flush=True)
    from ray._private.internal_api import memory_summary

    summ = memory_summary(stats_only=True)
    ray.shutdown()
    return {"rows": rows, "object_store": [ln.strip() for ln in summ.splitlines() if ln.strip()][:12]}


# ---- where embedding time goes ------------------------------------------------------------------------------

def sface_flops(path: str) -> dict:
    """Multiply-adds of the SFace graph per 112×112 image, from its shapes (Conv, Gemm, MatMul)."""
    import onnx
    from onnx import shape_inference

    m = onnx.load(path)
    for inp in m.graph.input:
        d = inp.type.tensor_type.shape.dim
        if d and not d[0].dim_value:
            d[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    macs = {"Conv": 0, "Gemm/MatMul": 0}
    for node in m.graph.node:
        if node.op_type == "Conv":
            w = inits.get(node.input[1])
            out = shapes.get(node.output[0])
            if w and out:
                macs["Conv"] += int(np.prod(out[1:])) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            w = inits.get(node.input[1])
            if w:
                macs["Gemm/MatMul"] += int(np.prod(w))
    total = sum(macs.values())
    return {"macs": total, "gflop_per_embedding": round(2 * total / 1e9, 4), "by_op": macs}


def gemm_rate_1core() -> float:
    """GFLOP/s of a single-threaded float32 GEMM (numpy's BLAS, 1 thread), in a fresh process."""
    code = ("import numpy as np, time\n"
            "a=np.random.rand(512,512).astype(np.float32); b=np.random.rand(512,512).astype(np.float32)\n"
            "a@b; best=1e9\n"
            "for _ in range(5):\n"
            "    t=time.perf_counter()\n"
            "    for _ in range(20): a@b\n"
            "    best=min(best,(time.perf_counter()-t)/20)\n"
            "print(2*512**3/best/1e9)\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)


def bench_embed(args) -> dict:
    import cv2
    import onnxruntime as ort

    from fer_core import datasets
    from fer_core.models import fp32_model
    from fer_core.signals import embeddings

    prepare(Path(args.work), {"sub1000": args.embed_n})
    ds = datasets.load("sub1000")
    cat = ds.catalog.sort_values("id")
    grays = [cv2.imread(str(ds.images / p), cv2.IMREAD_GRAYSCALE) for p in cat["path"].to_numpy()[:args.embed_probe]]
    imgs = [embeddings.crop_input(g) for g in grays]
    model = str(fp32_model("sface"))
    fl = sface_flops(model)
    gemm = gemm_rate_1core()
    out = {"flops": fl, "gemm_gflops_1core": round(gemm, 1), "probe_images": len(imgs), "variants": []}

    def session(level, threads):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def run(sess, chunk):
        outs = []
        for s in range(0, len(imgs), chunk):
            blob = cv2.dnn.blobFromImages(imgs[s:s + chunk], 1.0, (112, 112), (0, 0, 0), True, False)
            outs.append(sess.run(None, {"data": blob})[0])
        v = np.concatenate(outs).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    L = ort.GraphOptimizationLevel
    base_sess = session(L.ORT_ENABLE_ALL, 1)
    base = run(base_sess, 64)
    variants = [("default: ORT_ENABLE_ALL, chunk 64, 1 thread", L.ORT_ENABLE_ALL, 64, 1),
                ("ORT_DISABLE_ALL", L.ORT_DISABLE_ALL, 64, 1),
                ("ORT_ENABLE_BASIC", L.ORT_ENABLE_BASIC, 64, 1),
                ("ORT_ENABLE_EXTENDED (no NCHWc layout)", L.ORT_ENABLE_EXTENDED, 64, 1),
                ("ORT_ENABLE_LAYOUT", L.ORT_ENABLE_LAYOUT, 64, 1),
                ("chunk 1", L.ORT_ENABLE_ALL, 1, 1), ("chunk 16", L.ORT_ENABLE_ALL, 16, 1),
                ("chunk 256", L.ORT_ENABLE_ALL, 256, 1),
                ("2 threads", L.ORT_ENABLE_ALL, 64, 2)]
    for title, level, chunk, threads in variants:
        sess = session(level, threads)
        run(sess, chunk)   # warm
        ld = load()
        best = 1e9
        for _ in range(2):
            t = time.perf_counter()
            v = run(sess, chunk)
            best = min(best, time.perf_counter() - t)
        cos = float((v * base).sum(1).min())
        rate = len(imgs) / best
        share = rate * fl["gflop_per_embedding"] / (gemm * threads)
        row = {"variant": title, "embeddings_per_s": round(rate, 1), "min_cosine_vs_default": round(cos, 6),
               "achieved_share_of_gemm": round(share, 3), "load": ld}
        out["variants"].append(row)
        print(json.dumps(row), flush=True)
    # skipping pixel-identical images: how many embeddings FER2013 would not compute
    dup = Path(args.work) / "cache" / "datasets" / "fer2013"
    try:
        import pandas as pd

        from fer_core import store

        t = store.load_family(datasets.load("fer2013"), "duplicates")
        if t is None:
            t = pd.read_parquet(BENCH_CACHE / "signals" / "duplicates" / "v2" / "table.parquet", columns=["pixel_hash"])
        h = t["pixel_hash"]
        out["pixel_duplicates"] = {"images": int(len(h)), "distinct": int(h.nunique()),
                                   "saved_share": round(1 - h.nunique() / len(h), 4)}
    except Exception as exc:  # noqa: BLE001
        out["pixel_duplicates"] = f"not measured: {exc} ({dup})"
    # decode cost of larger JPEGs (AffectNet's are far larger than FER2013's 48×48)
    dec = {}
    g = grays[0]
    for side in (48, 224, 512):
        ok, buf = cv2.imencode(".jpg", cv2.resize(g, (side, side)), [cv2.IMWRITE_JPEG_QUALITY, 90])
        data = np.frombuffer(buf.tobytes(), np.uint8)
        t = time.perf_counter()
        for _ in range(300):
            cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        dec[side] = round(300 / (time.perf_counter() - t))
    out["jpeg_decode_per_s_1core"] = dec
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/ferray")
    ap.add_argument("--faces-n", type=int, default=4000)
    ap.add_argument("--mtcnn-n", type=int, default=2000)
    ap.add_argument("--embed-n", type=int, default=1000)
    ap.add_argument("--embed-probe", type=int, default=256)
    ap.add_argument("--skip-scan", action="store_true")
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--memory", action="store_true", help="only peak RSS: FER2013 quality+duplicates, local vs Ray")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("FER_CACHE_DIR", str(Path(args.work) / "cache"))
    print(machine(), flush=True)
    res = {}
    if args.memory:
        res["memory"] = bench_memory(args)
        args.skip_scan = args.skip_embed = True
    if not args.skip_scan:
        res["scan"] = bench_scan(args)
    if not args.skip_embed:
        res["embed"] = bench_embed(args)
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
