"""Face signals and embeddings: speed, separation on a set labelled by eye, kNN scaling.

    python bench/bench_faces.py [--cache DIR] [--face-images N] [--embed-images N] [--knn-million]

--cache DIR: a cache that already holds an imported FER2013 (`fer2013`); otherwise the archive is imported
into a temporary cache first. The labelled set is bench/face_labels.csv: 455 FER2013 images (the 120 lowest
scores of each detector variant on an 8,000-image sample, plus 120 random ones), each looked at by eye and
marked usable face or not (40 are not: placeholders, text, icons, blank frames, cartoons, upper-body shots,
two people).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from _common import FER_ZIP, ROOT, machine, peak_rss_mib


def _scan_subset(cache: str, n: int, families: str) -> tuple[float, float]:
    """Scan `families` on the first n images (a fresh dataset 'bench-sub'); (seconds, peak RSS MiB)."""
    code = f"""
import sys, time, resource, shutil, pandas as pd
from pathlib import Path
from fer_core import datasets, store
ds = datasets.load('fer2013', cache=sys.argv[1])
sub = Path(sys.argv[1]) / 'bench-src'
if not sub.exists():
    for p in ds.catalog.sort_values('id')['path'].iloc[:{n}]:
        (sub / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ds.images / p, sub / p)
    datasets.import_dataset(sub, 'bench-sub', cache=sys.argv[1])
    store.scan('bench-sub', ['faces'], cache=sys.argv[1]) if '{families}' == 'embeddings' else None
t = time.perf_counter()
store.scan('bench-sub', '{families}'.split(','), cache=sys.argv[1])
dt = time.perf_counter() - t
print(dt, max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
"""
    out = subprocess.run([sys.executable, "-c", code, cache], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"))
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    dt, rss = out.stdout.split()[-2:]
    return float(dt), float(rss) / 1024


def separation(cache: str) -> None:
    import cv2
    from sklearn.metrics import average_precision_score, roc_auc_score

    from fer_core import datasets
    from fer_core.signals import faces, faces_mtcnn

    lab = pd.read_csv(ROOT / "bench" / "face_labels.csv")
    ds = datasets.load("fer2013", cache)
    imgs = [cv2.imread(str(ds.image_path(p)), cv2.IMREAD_GRAYSCALE) for p in lab["path"]]
    bad = 1 - lab["usable_face"].to_numpy()
    rows = []
    for name, up, pad in [("YuNet ×4, no pad (default)", 4, 0), ("YuNet ×3", 3, 0), ("YuNet ×2", 2, 0),
                          ("YuNet raw crop (×1)", 1, 0), ("YuNet ×4 + 48 px pad", 4, 48)]:
        t = time.perf_counter()
        s = np.array([faces.detect(g, up, pad)["face_score"] for g in imgs])
        rows.append((name, s, len(imgs) / (time.perf_counter() - t)))
    det = faces_mtcnn._detector()
    t = time.perf_counter()
    res = det.detect_faces([faces_mtcnn.padded(g) for g in imgs])
    s = np.array([faces_mtcnn.score(r, 48)[0] for r in res])
    rows.append(("MTCNN, 24 px mean pad (batched)", s, len(imgs) / (time.perf_counter() - t)))
    print(f"separation on {len(imgs)} images labelled by eye ({int(bad.sum())} not usable faces):")
    print("  detector / preprocessing              ROC AUC   avg precision   precision@40   recall@review cut 0.33   img/s (1 process)")
    for name, s, speed in rows:
        top = np.argsort(s, kind="stable")[:int(bad.sum())]
        rec = (bad[s < 0.33].sum() / bad.sum())
        print(f"  {name:38s} {roc_auc_score(bad, -s):7.3f}   {average_precision_score(bad, -s):13.3f}   "
              f"{bad[top].mean():12.2f}   {rec:22.2f}   {speed:9.0f}")


def embeddings_speed(cache: str, n: int = 512) -> None:
    import cv2
    import onnxruntime as ort

    from fer_core import datasets, models
    from fer_core.signals import embeddings as E

    ds = datasets.load("fer2013", cache)
    paths = ds.catalog["path"].iloc[:n]
    x = [E.crop_input(cv2.imread(str(ds.image_path(p)), cv2.IMREAD_GRAYSCALE)) for p in paths]
    res = {}
    for threads in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(models.fp32_model("sface")), so, providers=["CPUExecutionProvider"])
        blob = cv2.dnn.blobFromImages(x, 1.0, (112, 112), (0, 0, 0), True, False)
        sess.run(None, {"data": blob[:64]})
        t = time.perf_counter()
        for s in range(0, n, 64):
            sess.run(None, {"data": blob[s:s + 64]})
        res[f"onnxruntime fp32 (folded), batch 64, {threads} thread(s)"] = n / (time.perf_counter() - t)
    cv2.setNumThreads(1)
    rec = cv2.FaceRecognizerSF.create(str(models.model_path("sface")), "")
    rec.feature(x[0])
    t = time.perf_counter()
    for a in x[:128]:
        rec.feature(a)
    res["OpenCV FaceRecognizerSF (int8 file), one image at a time, 1 thread"] = 128 / (time.perf_counter() - t)
    net = cv2.dnn.readNet(str(models.model_path("sface")))
    net.setInput(cv2.dnn.blobFromImages(x[:16], 1.0, (112, 112), (0, 0, 0), True, False))
    out = net.forward()
    res[f"OpenCV dnn batch of 16: {int(np.isnan(out).any(axis=1).sum())} NaN rows (unusable)"] = float("nan")
    print("SFace embedding throughput (whole-crop variant), 512 FER2013 images:")
    for k, v in res.items():
        print(f"  {k:75s} {v:8.1f} img/s" if v == v else f"  {k}")


def knn_bench(cache: str, million: bool) -> None:
    from fer_core import datasets, store
    from fer_core.signals import embeddings as E

    if store.family_status("fer2013", cache)["embeddings"]["complete"]:
        t = store.load_family(datasets.load("fer2013", cache), "embeddings")
        v = E.from_blob(t["emb_crop"])
        v = np.nan_to_num(v)
        t0 = time.perf_counter()
        E.knn(v, k=10)
        print(f"kNN (k=10, exact faiss inner product) over all {len(v):,} FER2013 embeddings: {time.perf_counter() - t0:.2f} s")
    if million:
        rng = np.random.default_rng(0)
        n = 1_000_000
        # clustered like face embeddings (40,000 "identities", cosine ≈ 0.6 to their centre); uniform random
        # 128-d vectors have no neighbourhood structure at all and make any approximate index look broken
        c = rng.normal(size=(n // 25, 128)).astype(np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        v = c[rng.integers(0, len(c), n)] + rng.normal(scale=0.08, size=(n, 128)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        del c
        t0 = time.perf_counter()
        sims, idx = E.knn(v, k=10)
        dt = time.perf_counter() - t0
        import faiss

        q = rng.choice(n, 1000, replace=False)
        flat = faiss.IndexFlatIP(128)
        flat.add(v)
        _, ex = flat.search(v[q], 11)
        rec = np.mean([len(set(ex[j][ex[j] != r][:10]) & set(idx[r])) / 10 for j, r in enumerate(q)])
        print(f"kNN (k=10, faiss IVF-flat, {int(4 * np.sqrt(n))} lists, nprobe 32) over 1,000,000 synthetic "
              f"clustered 128-d vectors: {dt:.0f} s build+search; recall@10 vs exact on 1,000 queries {rec:.3f}; "
              f"peak RSS {peak_rss_mib():,.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None)
    ap.add_argument("--face-images", type=int, default=35887)
    ap.add_argument("--embed-images", type=int, default=2000)
    ap.add_argument("--knn-million", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    tmp = None
    cache = args.cache
    if cache is None:
        tmp = tempfile.mkdtemp()
        cache = tmp
        from fer_core import datasets
        datasets.import_dataset(FER_ZIP, "fer2013", cache=cache)
    try:
        os.environ["FER_CACHE_DIR"] = cache
        for fam, n in (("faces", args.face_images), ("faces_mtcnn", args.face_images), ("embeddings", args.embed_images)):
            shutil.rmtree(os.path.join(cache, "datasets", "bench-sub"), ignore_errors=True)
            shutil.rmtree(os.path.join(cache, "bench-src"), ignore_errors=True)
            dt, rss = _scan_subset(cache, n, fam)
            print(f"scan {fam:12s} on {n:,} FER2013 images, 2 worker processes: {dt:6.1f} s → {n / dt:6.0f} img/s; "
                  f"peak RSS {rss:,.0f} MiB")
        shutil.rmtree(os.path.join(cache, "datasets", "bench-sub"), ignore_errors=True)
        shutil.rmtree(os.path.join(cache, "bench-src"), ignore_errors=True)
        separation(cache)
        embeddings_speed(cache)
        knn_bench(cache, args.knn_million)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
