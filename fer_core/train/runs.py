"""Run folders (``cache/datasets/<name>/runs/<run id>/``): where they are, what is in them, predicting with a
saved model. Below the training code (runner) and the yardsticks, which both read runs."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from fer_core import datasets
from fer_core.fsutil import pid_alive


def runs_root(name: str, cache=None) -> Path:
    paths = datasets.load(name, cache).paths
    return paths.made(paths.runs)


def new_run_id(preset: str, seed: int) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}-s{seed}-{uuid.uuid4().hex[:4]}"


def predict(model, x: np.ndarray, tta: bool = True, batch_size: int = 512) -> np.ndarray:
    xf = x[..., None].astype(np.float32)
    p = model.predict(xf, batch_size=batch_size, verbose=0)
    if tta:
        p = (p + model.predict(xf[:, :, ::-1], batch_size=batch_size, verbose=0)) / 2
    return p.astype(np.float32)


def stored(run_dir: Path) -> dict[str, dict]:
    """{yardstick key: figures} of every stored evaluation of a run."""
    d = Path(run_dir) / "yardsticks"
    out = {}
    for js in sorted(d.glob("*.json")) if d.exists() else []:
        try:
            m = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        out[m.get("yardstick", js.stem)] = m
    return out


def _read(p: Path, default=None):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return default


def run_info(name: str, run_id: str, cache=None) -> dict:
    rdir = runs_root(name, cache) / run_id
    st = _read(rdir / "status.json", {}) or {}
    if st.get("state") == "running" and not pid_alive(st.get("pid"), st.get("started")):
        st["state"] = "failed"
        st["error"] = {"code": "died", "message": "The training process ended without finishing.", "hint": "Run it again."}
    return {"run_id": run_id, "dir": rdir, "status": st, "config": _read(rdir / "config.json", {}) or {},
            "history": _read(rdir / "history.json", []) or [], "metrics": _read(rdir / "metrics.json"),
            "yardsticks": _yardsticks(rdir),
            "model": (rdir / "model.keras") if (rdir / "model.keras").exists() and st.get("state") == "done" else None}


def _yardsticks(rdir: Path) -> dict:
    return stored(rdir)


def list_runs(name: str, cache=None) -> list[dict]:
    root = runs_root(name, cache)
    return [run_info(name, d.name, cache) for d in sorted(root.iterdir(), reverse=True) if d.is_dir()]


def delete_run(name: str, run_id: str, cache=None) -> None:
    shutil.rmtree(runs_root(name, cache) / run_id, ignore_errors=True)
