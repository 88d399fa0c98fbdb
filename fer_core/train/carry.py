"""Carry finished A/B runs to another machine without their weights (what a long A/B needs when the machine it
ran on is gone: the standard-preset A/B of issue 17 is ~30 runs of 30–60 min on 2 cores).

``pack`` writes, for each A/B, its document and each finished run's figures: config, status, history, metrics,
test probabilities and ids, and every stored yardstick — everything the A/B's summary and verdicts are computed
from, ~0.3 MB a run — but not the model or its checkpoints. ``unpack`` puts them into a cache that holds the same
import of the dataset (same catalog hash), after checking that each yardstick's test set is, image for image,
label for label and leak flag for leak flag, the one the target gives here (the stored stamp names the link's
build time, which differs on every machine; the contents must not). Then a resumed A/B counts the carried runs
as finished and trains only the rest.

A carried run has no model: it cannot be evaluated on a yardstick added later or downloaded; its status says
``carried`` so the pages and the CLI can say why. Runs already in the cache are never overwritten.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from fer_core import datasets
from fer_core.errors import InvalidInput
from fer_core.progress import atomic_write_json
from fer_core.train import runs as runs_mod

FILES = ("config.json", "status.json", "history.json", "metrics.json", "test_probs.npy", "test_ids.json")
MANIFEST = "carry.json"


def pack(name: str, ab_ids: list[str], dest: str | Path, cache=None, run_ids: list[str] = ()) -> dict:
    """Write the A/Bs ``ab_ids`` of dataset ``name`` and their finished runs (without weights) under ``dest``, and
    the finished runs ``run_ids`` outside any A/B. Runs already packed there are left as they are. Returns the
    manifest."""
    from fer_core.train import ab

    dest = Path(dest)
    ds = datasets.load(name, cache)
    man_path = dest / MANIFEST
    old = json.loads(man_path.read_text()) if man_path.exists() else {}
    if old and (old.get("dataset"), old.get("catalog_hash")) != (name, ds.meta.get("catalog_hash")):
        raise InvalidInput(f"{dest} holds runs of another dataset or import ({old.get('dataset')}, catalog "
                           f"{old.get('catalog_hash')}).", "Pack into another folder.")
    packed = []
    for rid in run_ids:
        info = runs_mod.run_info(name, rid, cache)
        if info["status"].get("state") != "done" or not info["metrics"]:
            raise InvalidInput(f"Run {rid} of {name} has not finished.", "Pack it once it is done.")
        if not (dest / "runs" / rid / "metrics.json").exists():
            _copy_run(info["dir"], dest / "runs" / rid)
        packed.append(rid)
    for ab_id in ab_ids:
        doc = ab.load_ab(name, ab_id, cache)
        if doc is None:
            raise InvalidInput(f"There is no A/B '{ab_id}' of {name} to pack.", "List them with `python -m fer_core runs`.")
        for rids in doc.get("runs", {}).values():
            for rid in rids:
                info = runs_mod.run_info(name, rid, cache)
                if info["status"].get("state") != "done" or not info["metrics"]:
                    continue            # a run still training or stopped: the A/B trains (or resumes) it there
                out = dest / "runs" / rid
                if not (out / "metrics.json").exists():
                    _copy_run(info["dir"], out)
                packed.append(rid)
        atomic_write_json(dest / "ab" / f"{ab_id}.json", {k: v for k, v in doc.items() if k not in ("pid", "pid_started")})
    man = {"dataset": name, "catalog_hash": ds.meta.get("catalog_hash"), "packed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "ab": sorted(set(old.get("ab", [])) | set(ab_ids)), "runs": sorted(set(old.get("runs", [])) | set(packed))}
    atomic_write_json(man_path, man)
    return man


def _copy_run(src: Path, out: Path) -> None:
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in FILES:
        if (src / f).exists():
            shutil.copy2(src / f, tmp / f)
    if (src / "yardsticks").is_dir():
        shutil.copytree(src / "yardsticks", tmp / "yardsticks")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)                  # whole or not at all: metrics.json marks a packed run


def unpack(name: str, src: str | Path, cache=None) -> dict:
    """Bring the runs and A/B documents packed under ``src`` into this cache's ``name``. Refused when the dataset
    here is another import; a yardstick whose test set differs here is refused for its run (listed, not copied).
    Returns {"runs": [carried run ids], "kept": [already here], "refused": [(run id, why)], "ab": [A/B ids]}."""
    from fer_core.train import ab, yardstick

    src = Path(src)
    try:
        man = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{src} holds no packed runs ({e}).", "Pack them with `bench/ab_carry.py pack`.") from e
    ds = datasets.load(name, cache)
    if man.get("dataset") != name or man.get("catalog_hash") != ds.meta.get("catalog_hash"):
        raise InvalidInput(f"The runs in {src} were trained on {man.get('dataset')} as imported elsewhere "
                           f"(catalog {man.get('catalog_hash')}), not on {name} as imported here "
                           f"(catalog {ds.meta.get('catalog_hash')}).",
                           "Import the same archive under the same name, or train the runs here.")
    busy = [p.stem for p in sorted((src / "ab").glob("*.json")) if (src / "ab").is_dir()
            and (d := ab.load_ab(name, p.stem, cache)) is not None and ab.is_running(name, d, cache)]
    if busy:
        raise InvalidInput(f"A/B {', '.join(busy)} of {name} is running here.", "Unpack once it has stopped.")
    root = runs_mod.runs_root(name, cache)
    out = {"runs": [], "kept": [], "refused": [], "ab": []}
    for rdir in sorted((src / "runs").iterdir()) if (src / "runs").is_dir() else []:
        if not (rdir / "metrics.json").exists():
            continue
        dest = root / rdir.name
        if dest.exists():
            out["kept"].append(rdir.name)
            continue
        classes = json.loads((rdir / "config.json").read_text())["classes"]
        why = None
        for js in sorted((rdir / "yardsticks").glob("*.json")) if (rdir / "yardsticks").is_dir() else []:
            m = json.loads(js.read_text())
            target = yardstick.parse_target(m["yardstick"])
            with np.load(js.with_suffix(".npz"), allow_pickle=False) as z:
                ids, y, leaked = z["ids"], z["y"], z["leaked"]
            here = yardstick.test_set(target, classes, name, cache)
            here_leaked = here["leaked"] if here["leaked"] is not None else np.zeros(0, bool)
            if not (np.array_equal(ids.astype(str), here["ids"].astype(str)) and np.array_equal(y, here["y"])
                    and np.array_equal(leaked, here_leaked)):
                why = f"its {target.key} test set differs here (images, labels or leaked copies)"
                break
        if why:
            out["refused"].append((rdir.name, why))
            continue
        tmp = root / (rdir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(rdir, tmp)
        for js in sorted((tmp / "yardsticks").glob("*.json")) if (tmp / "yardsticks").is_dir() else []:
            m = json.loads(js.read_text())          # the same test set, checked above: stamped as current here
            m["stamp"] = yardstick.stamp(yardstick.parse_target(m["yardstick"]), name, cache)
            atomic_write_json(js, m)
        st = json.loads((tmp / "status.json").read_text())
        st["carried"] = {"from": man.get("packed"), "weights": False}
        atomic_write_json(tmp / "status.json", st)
        tmp.rename(dest)
        out["runs"].append(rdir.name)
    refused = {r for r, _ in out["refused"]}
    for p in sorted((src / "ab").glob("*.json")) if (src / "ab").is_dir() else []:
        doc = json.loads(p.read_text())
        here = ab.load_ab(name, doc["ab_id"], cache)
        if here is not None:        # runs this cache trained meanwhile stay; carried ones are added where missing
            for arm, rids in doc.get("runs", {}).items():
                have = here.setdefault("runs", {}).setdefault(arm, [])
                have += [r for r in rids if r not in have and r not in refused]
            doc = here
        else:
            doc["runs"] = {a: [r for r in rids if r not in refused] for a, rids in doc.get("runs", {}).items()}
        doc["complete"] = False     # resume decides; summaries are recomputed from the runs
        atomic_write_json(ab.ab_root(name, cache) / p.name, doc)
        out["ab"].append(doc["ab_id"])
    return out
