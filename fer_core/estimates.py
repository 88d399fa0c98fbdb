"""Time estimates from rates measured on this machine.

Every job of the app's queue that finishes leaves one entry in ``cache/estimates.json`` (appended under a lock
and replaced atomically; the newest 300 are kept): its kind, how much work it did in the unit its rate is
counted in, the seconds of work (time queued excluded) and the date. Before a long job starts the pages turn
the latest rates into "about 40 min at the rate measured here on 24 Nov 2026"; with nothing measured here yet,
the figures of bench/RESULTS.md (a 2-core machine) stand in, and the text says so.

Keys and their units:

    scan:<families>   images scanned              face signals: scan:faces+embeddings
    map:<method>      images on the map           map:umap, map:pca
    labels            training image-epochs       training images × (folds − 1) × epochs
    train:<preset>    training image-epochs       training images × epochs (single runs and the runs of an A/B)
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

from fer_core import locks
from fer_core.config import cache_root
from fer_core.progress import atomic_write_json

KEEP = 300
# bench/RESULTS.md, measured on 2026-11-24 on a 2-core machine with nothing else running (the fallback)
BENCH_DATE = "24 Nov 2026"
BENCH = {
    "scan:faces+embeddings": 1 / (1 / 743 + 1 / 34),   # YuNet 743 images/s, then SFace 34 images/s
    "scan:faces": 743.0, "scan:embeddings": 34.0, "scan:faces_mtcnn": 498.0,
    "map:umap": 35_887 / 70,                           # UMAP of FER2013's 35,887 embeddings in 70 s
    "labels": 4 * 7 * 21_532 / 1_156,                  # 4 folds × 7 epochs on 21,532 images in 1,156 s
    "train:smoke": 1_086.0, "train:standard": 299.0, "train:full": 24.0,   # training images/s
}
UNITS = {"scan": "images", "map": "images", "labels": "images", "train": "images"}   # training: image-epochs


def _path(cache=None):
    return cache_root(cache) / "estimates.json"


def history(cache=None) -> list[dict]:
    try:
        return json.loads(_path(cache).read_text()).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return []


def record(entry: dict, cache=None) -> None:
    """Append one measurement (under a lock: the server's sessions and threads may finish jobs at once)."""
    p = _path(cache)
    with locks.file_lock(p.with_name(".estimates.lock")):
        entries = history(cache) + [entry]
        atomic_write_json(p, {"format": "fer-estimates/1", "entries": entries[-KEEP:]})


# ---- measuring a finished job ------------------------------------------------------------------------------

def work_seconds(stages: dict) -> float | None:
    """From the first stage's start to the last event, waiting for a lock left out."""
    st = [s for k, s in stages.items() if k != "waiting" and "t0" in s and "t" in s]
    if not st:
        return None
    return max(s["t"] for s in st) - min(s["t0"] for s in st)


def _arg(argv: list[str], flag: str, default=None):
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else default


def measure(meta: dict, prog: dict, cache=None) -> dict | None:
    """The estimate entry of a finished job (``meta``: its job.json, ``prog``: its progress.json), or None when
    it did no measurable work (everything cached) or predates stage timing."""
    from fer_core import datasets

    kind, name, argv, stages = meta.get("kind"), meta.get("dataset"), meta.get("argv") or [], prog.get("stages") or {}
    secs = work_seconds(stages)
    if not secs or secs <= 0 or not name:
        return None
    key = units = None
    if kind in ("scan", "faces"):
        stage = next((k for k in stages if k == "scan" or k.startswith("scan:")), None)
        if stage:
            key, units = stage, stages[stage].get("done", 0) - stages[stage].get("done0", 0)
    elif kind == "map":
        stage = next((k for k in stages if k.startswith("map:")), None)
        if stage:
            key, units = stage, int(datasets.load(name, cache).meta.get("n_images", 0))
    elif kind == "labels":
        cat = datasets.load(name, cache).catalog
        folds, epochs = int(_arg(argv, "--folds", 4)), int(_arg(argv, "--epochs", 7))
        key, units = "labels", int((cat["split"] == "train").sum()) * (folds - 1) * epochs
    elif kind in ("train", "ab"):
        from fer_core.train import ab, runner

        if kind == "train":
            rids = [_arg(argv, "--run-id")]
        else:
            doc = ab.load_ab(name, (prog.get("info") or {}).get("ab_id") or _arg(argv, "--resume", ""), cache) or {}
            rids = [r for rs in (doc.get("runs") or {}).values() for r in rs]
        units, preset = 0, None
        for rid in filter(None, rids):
            info = runner.run_info(name, rid, cache)
            m, started = info["metrics"] or {}, info["status"].get("started", 0)
            if m and started >= meta.get("created", 0) - 1:   # trained by this job (an A/B may reuse runs)
                units += int(m["train_images"]) * int(m["epochs_run"])
                preset = m.get("preset")
        if preset:
            key = f"train:{preset}"
    if not key or not units or units <= 0:
        return None
    per_stage = {}
    for k, ev in stages.items():
        did, el = ev.get("done", 0) - ev.get("done0", 0), ev.get("t", 0) - ev.get("t0", 0)
        if k != "waiting" and "t0" in ev and el > 0 and did > 0:
            per_stage[k] = {"unit": ev.get("unit", ""), "done": did, "seconds": round(el, 2), "rate": did / el}
    return {"job": meta.get("id"), "kind": kind, "key": key, "dataset": name, "units": units,
            "seconds": round(secs, 2), "rate": units / secs, "when": time.time(), "stages": per_stage}


# ---- estimating --------------------------------------------------------------------------------------------

def duration(seconds: float) -> str:
    if seconds < 90:
        return "a minute" if seconds >= 40 else "under a minute"
    m = seconds / 60
    if m < 90:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


@dataclass
class Estimate:
    seconds: float
    rate: float              # units per second
    unit: str
    measured: float | None   # when the rate was measured here; None: the bench/RESULTS.md figure

    def text(self) -> str:
        head = f"about {duration(self.seconds)}"
        if self.measured is not None:
            day = time.strftime("%d %b %Y", time.localtime(self.measured)).lstrip("0")
            return f"{head} at the rate measured here on {day} ({self.rate:,.0f} {self.unit}/s)"
        return (f"{head} at the rate in bench/RESULTS.md ({self.rate:,.0f} {self.unit}/s on a 2-core machine, "
                f"{BENCH_DATE}; nothing measured on this machine yet)")


def rate(key: str, cache=None) -> tuple[float, float | None] | None:
    """(units per second, when measured) for ``key``: the median of the 3 latest measurements here (the
    machine as it is loaded now), else the bench figure (when None), else None."""
    mine = [e for e in history(cache) if e.get("key") == key and e.get("rate")]
    if mine:
        last = mine[-3:]
        return statistics.median(e["rate"] for e in last), last[-1]["when"]
    if key in BENCH:
        return BENCH[key], None
    return None


def estimate(key: str, units: float, cache=None) -> Estimate | None:
    r = rate(key, cache)
    if r is None or units <= 0:
        return None
    return Estimate(units / r[0], r[0], UNITS.get(key.split(":")[0], "units"), r[1])


def for_faces(n_images: int, families: str = "faces+embeddings", cache=None) -> Estimate | None:
    return estimate(f"scan:{families}", n_images, cache)


def for_map(n_images: int, method: str = "umap", cache=None) -> Estimate | None:
    return estimate(f"map:{method}", n_images, cache)


def for_labels(train_images: int, folds: int, epochs: int, cache=None) -> Estimate | None:
    return estimate("labels", train_images * (folds - 1) * epochs, cache)


def for_training(preset: str, train_images: list[int], epochs: int | None = None, cache=None,
                 **changes) -> Estimate | None:
    """One entry of ``train_images`` per run (an A/B: every arm × seed). An upper bound when the preset stops
    early. ``changes``: settings that replace the preset's (a baseline A/B's ``epochs`` or ``max_train``)."""
    from fer_core.train import presets

    p = presets.get(preset, **changes)
    n = sum(min(t, p.max_train or t) for t in train_images) * (epochs or p.epochs)
    return estimate(f"train:{preset}", n, cache)
