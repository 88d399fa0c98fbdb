"""Raw vs curated: train both arms (and "relabel instead of drop" when label signals exist) with the same
architecture, budget and seeds; report each arm on the untouched test split and the paired difference.

Result: ``cache/datasets/<name>/ab/<ab_id>.json`` (written after every finished run, so a long A/B shows
partial results as partial: ``complete`` stays false until every run is done).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from fer_core import datasets, store
from fer_core.errors import InvalidInput
from fer_core.fsutil import pid_alive, process_started
from fer_core.progress import CancelToken, ProgressFn, atomic_write_json, emit
from fer_core.recipe.vocab import LABEL_CUTS
from fer_core.train import runner


def ab_root(name: str, cache=None) -> Path:
    paths = datasets.load(name, cache).paths
    return paths.made(paths.ab)


BUDGETS = ("passes", "steps")   # what "the same budget" holds equal across arms: epochs over each arm's own
                                # images, or gradient steps (the raw arm's images per epoch for every arm)
# A new A/B holds compute equal: with the same passes, a recipe that removes 16% of the images also trains 16% fewer
# steps, and at the standard preset (still improving at its last epoch) that cost FER2013's curated arm 1.2 points
# on FER+ Test over 3 seeds (66.8% at the same passes, 68.0% at the same steps, raw 69.5%; bench/RESULTS.md, issue
# 17). A/Bs saved before the budget was recorded were trained with the same passes and resume so.
DEFAULT_BUDGET = "steps"
ARMS = ("raw", "curated", "control", "relabel", "crowd", "soft", "prior")
SOFT_ARMS = ("soft",)         # trained on the crowd's vote distribution instead of one label
PRIOR_ARMS = ("prior",)       # trained with loss weights restoring the source's class shares (runner.prior_weights)
ARM_TEXT = {
    "raw": "every training image, labels as given",
    "curated": "the recipe",
    "control": "random removal: as many images per class as the recipe removes, chosen at random",
    "relabel": "the recipe, relabelling label issues to the model's suggestion instead of dropping them",
    "crowd": "the recipe's quality and duplicate cuts, every voted image relabelled to the crowd majority and "
             "unsure votes set aside, no model label cut (what perfect relabelling would give)",
    "soft": "as crowd, trained on the ten votes' distribution instead of the majority (soft labels)",
    "prior": "the recipe, with loss weights that give each class its share of the whole training split again "
             "(what the cuts remove stays removed; how much of each class they remove is undone)",
}


def arms_for(name: str, recipe, relabel_arm: bool | None = None, cache=None,
             arms: list[str] | tuple[str, ...] | None = None) -> list[tuple[str, str, object]]:
    """[(arm, source, recipe)] for ``arms`` (default: raw, curated, and relabel when label signals exist and it
    is not switched off). An arm that cannot be run here is refused with what it needs."""
    st = store.family_status(name, cache)
    has_labels = st["labels"]["complete"]
    if arms is None:
        arms = ["raw", "curated"] + (["relabel"] if (has_labels if relabel_arm is None else relabel_arm) else [])
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise InvalidInput(f"Unknown A/B arm(s): {', '.join(bad)}.", "Arms: " + ", ".join(ARMS) + ".")
    out = []
    for arm in [a for a in ARMS if a in arms]:       # a fixed order, whatever order they were asked in
        if arm == "raw":
            out.append(("raw", "raw", None))
        elif arm in ("curated", "prior"):
            out.append((arm, "recipe", recipe))
        elif arm == "control":
            out.append(("control", "control", recipe))
        elif arm == "relabel":
            if not has_labels:
                raise InvalidInput("The relabel arm needs label signals.", f"Run `python -m fer_core labels {name}` first.")
            out.append(("relabel", "recipe", recipe.with_labels(policy="relabel").replace(name=f"{recipe.name} (relabel)")))
        elif arm in ("crowd", "soft"):
            if not st.get("votes", {}).get("complete"):
                why = st.get("votes", {}).get("stale") or "none are stored"
                raise InvalidInput(f"The {arm} arm needs crowd votes for {name} ({why}).",
                                   f"Import FER+ and link it: `python -m fer_core link {name} ferplus`.")
            r = recipe
            for c in LABEL_CUTS:      # the crowd's labels replace the model's label cut
                if c in r.filters:
                    r = r.with_filter(c, enabled=False)
            out.append((arm, "recipe", r.with_labels(crowd="relabel", crowd_unsure="drop")
                        .replace(name=f"{recipe.name} ({'crowd relabel' if arm == 'crowd' else 'soft crowd labels'})")))
    return out


def _pairs_of(correct: dict[str, dict[int, np.ndarray]], y: np.ndarray, leaked: np.ndarray | None) -> dict:
    """Paired differences: every arm against raw, curated against control, prior against curated."""
    from fer_core.train.evaluate import paired_difference

    out = {}
    for base, arm in [("raw", a) for a in correct if a != "raw"] + [("control", "curated"), ("curated", "prior")]:
        if not correct.get(base) or not correct.get(arm):
            continue
        seeds = sorted(set(correct[base]) & set(correct[arm]))
        if not seeds:
            continue
        a = np.stack([correct[base][s] == y for s in seeds])
        b = np.stack([correct[arm][s] == y for s in seeds])
        d = {"seeds": seeds, "against": base, "full": paired_difference(a, b)}
        if leaked is not None and (~leaked).any():      # an empty leakage-aware set is no result
            d["without_leaked"] = paired_difference(a[:, ~leaked], b[:, ~leaked])
        out[arm if base == "raw" else f"{arm}-{base}"] = d
    return out


CAPTURE_ARMS = ("curated", "relabel", "prior")   # automatic curation, measured against the crowd relabel's gain


def _captured(correct: dict[str, dict[int, np.ndarray]], y: np.ndarray, leaked: np.ndarray | None) -> dict:
    """{arm: share of the crowd arm's gain over raw that the arm captures} for the automatic arms (issue 17: how
    much of what perfect relabelling gives does the recipe get), on the full split and without leaked images."""
    from fer_core.train.evaluate import captured_share

    out = {}
    if not correct.get("raw") or not correct.get("crowd"):
        return out
    for arm in [a for a in CAPTURE_ARMS if correct.get(a)]:
        seeds = sorted(set(correct["raw"]) & set(correct["crowd"]) & set(correct[arm]))
        if not seeds:
            continue
        a, b, c = (np.stack([correct[k][s] == y for s in seeds]) for k in ("raw", arm, "crowd"))
        d = {"seeds": seeds, "full": captured_share(a, b, c)}
        if leaked is not None and (~leaked).any():
            d["without_leaked"] = captured_share(a[:, ~leaked], b[:, ~leaked], c[:, ~leaked])
        out[arm] = d
    return out


def prior_weights_to(own: dict[str, int], target: dict[str, int], classes: list[str]) -> np.ndarray:
    """Per class (in ``classes`` order), Bayes' factor moving a model trained on class counts ``own`` to the class
    shares of ``target``: (target share) / (own share); 1 where the model saw none of the class."""
    t, o = sum(target.values()) or 1, sum(own.values()) or 1
    return np.array([(target.get(c, 0) / t) / (own[c] / o) if own.get(c) else 1.0 for c in classes])


def _crowd_prior(probs: dict[str, dict[int, np.ndarray]], counts: dict[str, dict[int, dict]], classes: list[str],
                 y: np.ndarray, leaked: np.ndarray | None) -> dict | None:
    """How much of the crowd relabel's gain over raw is a change of class prior (issue 17): each raw run's
    probabilities re-weighted to the same seed's crowd run's training class shares (no retraining, no test label
    used) — ``prior``: shifted raw − raw; ``beyond``: crowd − shifted raw, what the crowd's labels taught image by
    image. The two add up to crowd − raw. None without raw and crowd runs of a common seed."""
    from fer_core.train.evaluate import paired_difference

    seeds = sorted(set(probs.get("raw", {})) & set(probs.get("crowd", {})))
    seeds = [s for s in seeds if counts["raw"].get(s) and counts["crowd"].get(s)]
    if not seeds:
        return None
    ws = {s: prior_weights_to(counts["raw"][s], counts["crowd"][s], classes) for s in seeds}
    raw = np.stack([probs["raw"][s].argmax(1) == y for s in seeds])
    shifted = np.stack([(probs["raw"][s] * ws[s]).argmax(1) == y for s in seeds])
    crowd = np.stack([probs["crowd"][s].argmax(1) == y for s in seeds])
    out = {"seeds": seeds, "weights": dict(zip(classes, np.round(ws[seeds[0]], 4).tolist()))}
    for part, (a, b) in {"prior": (raw, shifted), "beyond": (shifted, crowd)}.items():
        out[part] = {"full": paired_difference(a, b)}
        if leaked is not None and (~leaked).any():
            out[part]["without_leaked"] = paired_difference(a[:, ~leaked], b[:, ~leaked])
    return out


def summarize_yardstick(name: str, runs: dict[str, list[str]], key: str, cache=None) -> dict | None:
    """Per arm on yardstick ``key`` (DATASET:SPLIT): accuracy per run and paired differences."""
    from fer_core.train import yardstick

    out = {"arms": {}, "differences": {}}
    correct: dict[str, dict[int, np.ndarray]] = {}
    probs: dict[str, dict[int, np.ndarray]] = {}
    counts: dict[str, dict[int, dict]] = {}
    classes: list[str] = []
    ref = None
    for arm, run_ids in runs.items():
        rows = []
        for rid in run_ids:
            info = runner.run_info(name, rid, cache)
            got = yardstick.load(info["dir"], key)
            if got is None:
                continue
            m, arr = got
            if ref is None:
                ref = arr
            elif (list(arr["ids"]) != list(ref["ids"]) or not np.array_equal(arr["y"], ref["y"])
                  or not np.array_equal(arr["leaked"] if arr["leaked"] is not None else [],
                                        ref["leaked"] if ref["leaked"] is not None else [])):
                raise InvalidInput(f"The arms were evaluated on different {key} images, labels or leakage flags "
                                   "(the target was re-imported or linked in between).",
                                   "Resume the A/B: it evaluates the stale runs again on the target as it is now.")
            rows.append({"run_id": rid, "seed": m.get("seed", info["config"].get("seed")),
                         "accuracy": m["test"]["accuracy"], "macro_f1": m["test"]["macro_f1"],
                         "accuracy_without_leaked": (m.get("test_without_leaked") or {}).get("accuracy"),
                         "ci95": m["test"]["ci95"], "per_class_recall": m["test"].get("per_class_recall"),
                         "per_class_recall_without_leaked": (m.get("test_without_leaked") or {}).get("per_class_recall"),
                         "set_aside": m.get("set_aside"), "leakage": m.get("leakage")})
            seed = int(info["config"].get("seed", 0))
            correct.setdefault(arm, {})[seed] = arr["probs"].argmax(1)
            if arm in ("raw", "crowd") and info["config"].get("train_label_counts"):
                probs.setdefault(arm, {})[seed] = arr["probs"]
                counts.setdefault(arm, {})[seed] = info["config"]["train_label_counts"]
                classes = classes or list(info["config"].get("classes") or m.get("classes") or [])
        accs = [r["accuracy"] for r in rows]
        out["arms"][arm] = {"runs": rows, "mean_accuracy": float(np.mean(accs)) if accs else None,
                            "sd_accuracy": float(np.std(accs, ddof=1)) if len(accs) > 1 else None}
    if ref is None:
        return None
    out["images"] = int(len(ref["y"]))
    out["differences"] = _pairs_of(correct, ref["y"], ref["leaked"])
    out["captured"] = _captured(correct, ref["y"], ref["leaked"])
    if classes and probs.get("raw") and probs.get("crowd"):
        cp = _crowd_prior(probs, counts, classes, ref["y"], ref["leaked"])
        if cp is not None:
            out["crowd_prior"] = cp
    return out


SAME_DECISIONS = (("curated", "control"), ("curated", "prior"), ("crowd", "soft"))   # arms of one seed built on one set of decisions


def image_set_notes(name: str, runs: dict[str, list[str]], cache=None) -> list[str]:
    """Warnings when runs that should share their training images do not: an arm's seeds trained on different
    recipe decisions (the signals were recomputed, or overrides edited, between its runs: its seeds are then not
    repeats of one arm), or a seed's curated run and the control built on it saw different decisions (curated −
    control then compares two recipes' outputs, not which images against how many). Raw runs have no decisions."""
    fps: dict[str, dict[int, tuple[str, int]]] = {}
    for arm, rids in runs.items():
        for rid in rids:
            info = runner.run_info(name, rid, cache)
            dec = (info["config"].get("source") or {}).get("decisions")
            if not info["metrics"] or not isinstance(dec, dict) or not dec.get("fingerprint"):
                continue
            fps.setdefault(arm, {})[int(info["metrics"]["seed"])] = (dec["fingerprint"], int(info["metrics"]["train_images"]))
    notes = []
    for arm, by_seed in fps.items():
        distinct = {fp for fp, _ in by_seed.values()}
        if len(distinct) > 1:
            notes.append(f"The {arm} arm's seeds trained on {len(distinct)} different sets of recipe decisions "
                         "(between its runs the signals were recomputed, the overrides edited or the decision code changed): "
                         + ", ".join(f"seed {s} kept {n:,} training images" for s, (_, n) in sorted(by_seed.items()))
                         + ". Its seeds are not repeats of one arm: its spread over seeds includes that change.")
    for a, b in SAME_DECISIONS:
        for seed in sorted(set(fps.get(a, {})) & set(fps.get(b, {}))):
            if fps[a][seed][0] != fps[b][seed][0]:
                notes.append(f"Seed {seed}: the {b} run was built on other recipe decisions than the {a} run "
                             f"({fps[b][seed][1]:,} against {fps[a][seed][1]:,} training images): {a} − {b} at this "
                             "seed compares two decision sets, not only which images were removed.")
    return notes


def recall_table(result: dict):
    """Mean recall per class over each arm's seeds, on the whole test split and (a second row per arm) on only the
    test images with no copy in training; ``result``: ``summarize``'s output or one of its ``yardsticks``. A
    DataFrame (rows ``arm`` / ``arm (without leaked)``, columns the classes) or None when no run has per-class
    recall."""
    import pandas as pd

    rows = {}
    for arm, r in result.get("arms", {}).items():
        for key, label in (("per_class_recall", arm), ("per_class_recall_without_leaked", f"{arm} (without leaked)")):
            got = [x[key] for x in r["runs"] if x.get(key)]
            if got:
                rows[label] = pd.DataFrame(got).mean()
    return pd.DataFrame(rows).T if rows else None


def summarize(name: str, runs: dict[str, list[str]], cache=None, eval_on: list[str] | tuple = ()) -> dict:
    """Per arm: metrics of each finished run; paired differences of each arm against raw (and curated against
    control); the same on every extra yardstick in ``eval_on`` (``result["yardsticks"][key]``)."""
    out = {"arms": {}, "differences": {}}
    correct = {}
    ids_ref = None
    for arm, run_ids in runs.items():
        rows, cs = [], []
        for rid in run_ids:
            info = runner.run_info(name, rid, cache)
            m = info["metrics"]
            if not m:
                continue
            rows.append({"run_id": rid, "seed": m["seed"], "accuracy": m["test"]["accuracy"],
                         "macro_f1": m["test"]["macro_f1"],
                         "accuracy_without_leaked": (m["test_without_leaked"] or {}).get("accuracy"),
                         "ci95": m["test"]["ci95"], "train_images": m["train_images"], "epochs_run": m["epochs_run"],
                         "images_per_epoch": m.get("images_per_epoch", m["train_images"]),
                         "per_class_recall": m["test"].get("per_class_recall"),
                         "per_class_recall_without_leaked": (m["test_without_leaked"] or {}).get("per_class_recall"),
                         "history": info["history"]})
            probs = np.load(info["dir"] / "test_probs.npy")
            ids = json.loads((info["dir"] / "test_ids.json").read_text())
            ids_ref = ids_ref or ids
            if ids != ids_ref:
                raise InvalidInput("The arms were evaluated on different test sets.", "Re-run the A/B.")
            cs.append((m["seed"], probs.argmax(1)))
        accs = [r["accuracy"] for r in rows]
        out["arms"][arm] = {"runs": rows, "mean_accuracy": float(np.mean(accs)) if accs else None,
                            "sd_accuracy": float(np.std(accs, ddof=1)) if len(accs) > 1 else None}
        correct[arm] = dict(cs)
    if ids_ref is not None:
        from fer_core.train import data as data_mod

        from fer_core import splits

        ds = datasets.load(name, cache)
        cat = splits.apply(ds, ds.catalog).set_index("id")
        first = next(r for a in runs.values() for r in a if runner.run_info(name, r, cache)["metrics"])
        classes = runner.run_info(name, first, cache)["metrics"]["classes"]
        y = np.array([classes.index(l) for l in cat.loc[ids_ref, "label"]])
        leaked = data_mod.test_leakage(name, cache)
        if leaked is not None and len(leaked) != len(ids_ref):     # a test split with crowd-unsure images set aside
            all_te = np.sort(cat.index[cat["split"] == "test"].to_numpy())
            leaked = leaked[np.isin(all_te, ids_ref)]
        out["differences"] = _pairs_of(correct, y, leaked)
        out["captured"] = _captured(correct, y, leaked)
    ys = {}
    for key in eval_on:
        s = summarize_yardstick(name, runs, key, cache)
        if s is not None:
            ys[key] = s
    if ys:
        out["yardsticks"] = ys
    out["notes"] = image_set_notes(name, runs, cache)
    return out


def _definition(saved: dict | None) -> dict:
    """A run's preset as it was defined when it trained, less what an A/B sets per arm (images per epoch) and what
    the run did not use (the patience of a cosine schedule, which never stops early)."""
    saved = saved or {}
    unused = {"epoch_images"} | ({"patience"} if saved.get("lr_decay") == "cosine" else set())
    return {k: v for k, v in saved.items() if k not in unused}


def _defined(preset: str, changes: dict) -> dict:
    """What ``preset`` with ``changes`` trains as today (settings given explicitly at their default value are the
    same settings: an A/B started with ``--epochs 24`` under standard is comparable to one started without)."""
    from fer_core.train import presets

    return _definition(presets.get(preset, **{k: v for k, v in changes.items() if k != "epoch_images"}).to_dict())


def _check_definition(rid: str, info: dict, preset: str, changes: dict, where: str) -> None:
    """Refuse to reuse a finished run whose preset was defined otherwise than ``preset`` (with ``changes``) is now —
    a preset whose schedule changed since keeps its name, and pairing across the change would mix incomparable
    runs silently."""
    now = _defined(preset, changes)
    was = _definition(info["config"].get("preset"))
    if was and was != now:
        diff = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        raise InvalidInput(f"Run {rid} of {where} was trained with the {preset} preset as it was defined then "
                           f"({', '.join(f'{k} {was.get(k)!r}' for k in diff)}; now "
                           f"{', '.join(f'{k} {now.get(k)!r}' for k in diff)}); pairing it with runs of today's "
                           "definition would mix incomparable runs.", "Start a new A/B (no baseline) instead.")


def baseline_raw_runs(name: str, baseline_id: str, preset: str, changes: dict, cache=None) -> dict[int, str]:
    """{seed: run_id} of the finished raw runs of an earlier A/B, for reuse as this A/B's raw arm.

    The raw arm does not depend on the recipe, so a second recipe can be compared against the same raw runs
    (training is deterministic given the seed). Refused unless the baseline used the same preset and budget
    and its raw runs were trained on the dataset as it is now imported (same catalog)."""
    base = load_ab(name, baseline_id, cache)
    if base is None:
        raise InvalidInput(f"There is no A/B '{baseline_id}' of {name} to take the raw runs from.",
                           "Pick one listed on the Train page's A/B tab.")
    diff = ["preset"] if base["preset"] != preset else \
        ["preset settings"] if _defined(preset, base.get("changes", {})) != _defined(preset, changes) else []
    if diff:
        raise InvalidInput(f"A/B '{baseline_id}' was trained with a different {', '.join(diff)}; its raw runs are "
                           "not comparable.", "Use the same preset and settings, or train the raw arm again.")
    ds = datasets.load(name, cache)
    chash = ds.meta.get("catalog_hash")
    cat = ds.catalog
    counts = cat.loc[cat["split"] == "train", "label"].value_counts().to_dict()
    out: dict[int, str] = {}
    for rid in base.get("runs", {}).get("raw", []):
        info = runner.run_info(name, rid, cache)
        if info["status"].get("state") != "done" or not info["metrics"]:
            continue
        cfg = info["config"]
        if cfg.get("source", {}).get("catalog_hash") is not None:
            same = cfg["source"]["catalog_hash"] == chash
        else:   # runs from before the hash was recorded: the full raw training set must match label for label
            same = (not cfg.get("preset", {}).get("max_train")
                    and {k: v for k, v in cfg.get("train_label_counts", {}).items() if v} == counts)
        if not same:
            raise InvalidInput(f"Raw run {rid} of A/B '{baseline_id}' cannot be shown to come from {name} as it is "
                               "imported now (re-imported since, or trained on a subset before this was recorded).",
                               "Train the raw arm again (no baseline).")
        _check_definition(rid, info, preset, changes, f"A/B '{baseline_id}'")
        out[int(info["metrics"]["seed"])] = rid
    if not out:
        raise InvalidInput(f"A/B '{baseline_id}' has no finished raw run to reuse.", "Train the raw arm again (no baseline).")
    return out


def run_ab(name: str, recipe, seeds: list[int], preset: str = "standard", relabel_arm: bool | None = None,
           progress: ProgressFn | None = None, cancel: CancelToken | None = None, cache=None,
           ab_id: str | None = None, resume: bool = False, baseline: str | None = None,
           arms: list[str] | None = None, eval_on: list[str] | tuple = (), train_seeds: list[int] | None = None,
           train_arms: list[str] | None = None, budget: str | None = None, **preset_changes) -> dict:
    """Train every (seed, arm) pair, seed-major. With ``resume`` and an existing ``ab_id``, runs of that A/B
    that finished are kept and only the missing pairs are trained (a killed or cancelled A/B loses nothing;
    more seeds can be added later). Resuming with a different dataset, preset, recipe or budget is refused.
    ``baseline``: the id of an earlier A/B whose finished raw runs are reused for the seeds they cover (see
    ``baseline_raw_runs``); seeds it lacks are trained as usual. ``arms``: which arms (see :data:`ARMS`);
    ``eval_on``: extra yardsticks (``DATASET[:SPLIT]``) every run is evaluated on — a resumed A/B evaluates its
    finished runs on a newly added yardstick without retraining them. ``train_seeds``: train only the missing
    runs of these seeds this time (the A/B keeps its whole seed list and stays incomplete until a later resume
    trains the rest) — so other work can be queued between seeds. ``train_arms``: likewise, only these arms.
    ``budget``: "passes" (every arm trains the preset's epochs over its own images: an arm that keeps fewer images
    takes fewer gradient steps) or "steps" (every arm takes as many steps as the raw arm of its seed: its epochs
    draw the raw arm's number of images, cycling through its own — :data:`BUDGETS`). Default: a resumed A/B's
    own, else :data:`DEFAULT_BUDGET`."""
    from fer_core.train import yardstick
    from fer_core import recipe as recipe_mod

    if isinstance(recipe, (str, Path)):
        recipe = recipe_mod.Recipe.load(recipe)
    if budget is not None and budget not in BUDGETS:
        raise InvalidInput(f"Unknown A/B budget '{budget}'.", "Use " + " or ".join(BUDGETS) + ".")
    ab_id = ab_id or f"{time.strftime('%Y%m%d-%H%M%S')}-ab-{uuid.uuid4().hex[:4]}"
    path = ab_root(name, cache) / f"{ab_id}.json"
    changes = {k: v for k, v in preset_changes.items() if v is not None}
    old = load_ab(name, ab_id, cache) if resume else None
    if resume and old is None:
        raise InvalidInput(f"There is no A/B '{ab_id}' of {name} to resume.", "List them with the Train page's A/B tab.")
    if budget is None:
        budget = old.get("budget", "passes") if old is not None else DEFAULT_BUDGET
    if budget == "steps" and changes.get("epoch_images") is not None:
        raise InvalidInput("Budget 'steps' sets each arm's images per epoch itself.", "Leave epoch_images unset.")
    if old is not None:
        if recipe is None:
            recipe = recipe_mod.Recipe.from_dict(old["recipe"])
        mismatch = [k for k, a, b in (("preset", old["preset"], preset),
                                      ("recipe", old["recipe"], recipe.to_dict()),
                                      ("preset settings", _defined(preset, old.get("changes", {})),
                                       _defined(preset, changes)),
                                      ("budget", old.get("budget", "passes"), budget)) if a != b]
        if mismatch:
            raise InvalidInput(f"A/B '{ab_id}' was started with a different {', '.join(dict.fromkeys(mismatch))}; resuming would "
                               "mix incomparable runs.", "Start a new A/B instead.")
        relabel_arm = "relabel" in old["arms"]
        if arms is not None and sorted(arms) != sorted(old["arms"]):
            extra = sorted(set(arms) - set(old["arms"]))
            arms = list(old["arms"]) + extra        # arms can be added to a resumed A/B, never taken away
        else:
            arms = list(old["arms"])
        eval_on = list(dict.fromkeys(list(old.get("eval_on", [])) + list(eval_on)))
        baseline = old.get("baseline") if baseline is None else baseline
        if baseline != old.get("baseline"):
            raise InvalidInput(f"A/B '{ab_id}' was started with raw baseline {old.get('baseline')!r}; resuming would "
                               "mix incomparable runs.", "Start a new A/B instead.")
    elif recipe is None:
        raise InvalidInput("The A/B needs a recipe.", "Pass --recipe R.yaml (or --resume AB_ID).")
    eval_on = [yardstick.parse_target(t).key for t in eval_on]
    for t in eval_on:
        datasets.load(yardstick.parse_target(t).dataset, cache)
    arms = arms_for(name, recipe, relabel_arm, cache, arms)
    if budget == "steps" and "raw" not in [a for a, _, _ in arms]:
        raise InvalidInput("Budget 'steps' gives every arm as many steps as the raw arm, which is not among the arms.",
                           "Add raw to the arms (or reuse an earlier A/B's with --baseline), or use --budget passes.")
    runs: dict[str, list[str]] = {a: [] for a, _, _ in arms}
    done: dict[tuple[str, int], str] = {}
    if old is not None:
        chash = datasets.load(name, cache).meta.get("catalog_hash")
        for arm, rids in old.get("runs", {}).items():
            for rid in rids:
                info = runner.run_info(name, rid, cache)
                same = (info["config"].get("source") or {}).get("catalog_hash") in (None, chash)
                if info["status"].get("state") == "done" and info["metrics"] and arm in runs and same:
                    _check_definition(rid, info, preset, changes, f"A/B '{ab_id}'")
                    done[(arm, int(info["metrics"]["seed"]))] = rid   # (a run of an earlier import is retrained)
        seeds = sorted(set(old["seeds"]) | set(seeds))
    if baseline:
        for seed, rid in baseline_raw_runs(name, baseline, preset, changes, cache).items():
            done.setdefault(("raw", seed), rid)
    total = len(arms) * len(seeds)
    doc = {"ab_id": ab_id, "dataset": name, "preset": preset, "seeds": list(seeds), "recipe": recipe.to_dict(),
           "arms": [a for a, _, _ in arms], "changes": changes, "budget": budget, "runs": runs, "complete": False, "baseline": baseline,
           "eval_on": eval_on,
           "created": old["created"] if old else time.time(), "pid": os.getpid(), "pid_started": process_started()}
    if old is not None:
        doc["resumed"] = old.get("resumed", 0) + 1
    for seed in seeds:
        for arm, _, _ in arms:
            if (arm, seed) in done:
                runs[arm].append(done[(arm, seed)])
                rdir = runner.run_info(name, done[(arm, seed)], cache)["dir"]
                for t in eval_on:   # a yardstick added since, or one whose target changed: the saved model again
                    if not yardstick.current(rdir, t, name, cache):
                        yardstick.evaluate_run(name, done[(arm, seed)], t, cache, progress=progress, cancel=cancel)
    if any(runs.values()):
        doc["result"] = summarize(name, runs, cache, eval_on)
    atomic_write_json(path, doc)
    k = 0
    for seed in seeds:               # seed-major: a stopped A/B still has paired arms
        for arm, source, rec in arms:
            if (arm, seed) in done or (train_seeds is not None and seed not in train_seeds) \
                    or (train_arms is not None and arm not in train_arms):
                k += 1
                continue
            emit(progress, "ab", k, total, "runs", message=f"{arm}, seed {seed}")
            rid = _unfinished(name, ab_id, arm, seed, preset, cache)
            resume = rid is not None          # a killed run continues from its last finished epoch
            rid = rid or runner.new_run_id(preset, seed) + f"-{arm}"
            steps = {}
            if budget == "steps" and arm != "raw":
                steps["epoch_images"] = _raw_train_images(name, runs.get("raw", []), seed, cache)
            runs[arm].append(rid)
            atomic_write_json(path, doc)
            runner.train(name, source, rec, preset=preset, seed=seed, run_id=rid, group=ab_id, arm=arm,
                         progress=progress, cancel=cancel, cache=cache, eval_on=eval_on, soft=arm in SOFT_ARMS,
                         prior="source" if arm in PRIOR_ARMS else "kept", resume=resume, **changes, **steps)
            k += 1
            doc["result"] = summarize(name, runs, cache, eval_on)
            atomic_write_json(path, doc)
    emit(progress, "ab", total, total, "runs")
    doc["complete"] = all(len(runs[a]) == len(seeds) for a, _, _ in arms)
    if doc["complete"]:
        doc["finished"] = time.time()
    atomic_write_json(path, doc)
    return doc


def _raw_train_images(name: str, raw_runs: list[str], seed: int, cache=None) -> int:
    """How many images the raw run of ``seed`` trained on (the step budget of every arm under budget "steps")."""
    for rid in raw_runs:
        info = runner.run_info(name, rid, cache)
        if info["metrics"] and int(info["metrics"].get("seed", -1)) == seed:
            return int(info["metrics"]["train_images"])
    raise InvalidInput(f"Budget 'steps' gives every arm as many steps as the raw run of seed {seed}, which has not "
                       "finished.", "Train the raw arm of that seed first (or include raw in the arms to train).")


def _unfinished(name: str, ab_id: str, arm: str, seed: int, preset: str, cache=None) -> str | None:
    """The run of this A/B's ``arm`` and ``seed`` that stopped (killed, failed, cancelled) furthest along — the most
    checkpointed epochs, the newest of equals — or None. Found by the runs' own configs (group, arm, seed, preset),
    not through the A/B's document: that lists finished runs only, so a resume that trained other seeds or arms
    first rewrote it without the stopped run, and its epochs were trained again from the start."""
    best, best_epoch = None, 0
    for info in runner.list_runs(name, cache):                         # newest first
        cfg = info["config"]
        if cfg.get("group") != ab_id or cfg.get("arm") != arm or int(cfg.get("seed", -1)) != seed \
                or (cfg.get("preset") or {}).get("name") != preset \
                or info["status"].get("state") not in ("failed", "cancelled"):
            continue
        ck = runner.load_checkpoint(info["dir"] / "checkpoint")
        if ck is not None and int(ck["epoch"]) > best_epoch:
            best, best_epoch = info["run_id"], int(ck["epoch"])
    return best


def load_ab(name: str, ab_id: str, cache=None) -> dict | None:
    p = ab_root(name, cache) / f"{ab_id}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def is_running(name: str, doc: dict, cache=None) -> bool:
    """True while the process training this A/B is alive (an unfinished A/B that is not running can be resumed)."""
    if doc.get("complete"):
        return False
    if doc.get("pid") is not None:
        return pid_alive(doc["pid"], doc.get("pid_started"))
    return any(runner.run_info(name, r, cache)["status"].get("state") == "running"
               for rids in doc.get("runs", {}).values() for r in rids)


def list_ab(name: str, cache=None) -> list[dict]:
    """Every A/B of the dataset, newest first (by start time: ids given by hand do not sort by time)."""
    out = []
    for p in ab_root(name, cache).glob("*.json"):
        if p.name.startswith("."):   # a file being written (fsutil.atomic_path), or left by a killed writer
            continue
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda d: (d.get("created") or 0, d.get("ab_id", "")), reverse=True)


MIN_SEEDS = 3  # fewer: the interval resamples test images only, not the seed-to-seed variation of training


def caveat(diff: dict, preset: str | None = None) -> str:
    """Why a verdict is only indicative ("1 seed, smoke preset"), or "" when it is not."""
    n = len(diff.get("per_seed") or []) or None
    why = []
    if n is not None and n < MIN_SEEDS:
        why.append(f"{n} seed{'s' if n != 1 else ''}")
    if preset == "smoke":
        why.append("smoke preset")
    return ", ".join(why)


def captured_text(arm: str, entry: dict, preset: str | None = None, which: str = "full") -> str:
    """One line on how much of the crowd relabel's gain over raw ``arm`` captures: ``entry`` is the arm's item of a
    summary's ``captured``; ``which`` "full" or "without_leaked"."""
    cap = entry[which]
    ref = cap["reference_gain"] * 100
    if cap["share"] is None:
        why = cap["why"].replace("the reference", "the crowd relabel").replace("the base", "raw")
        out = f"{arm} gains {cap['gain'] * 100:+.2f} points over raw, the crowd relabel {ref:+.2f} — {why}; no share."
    else:
        lo, hi = cap["ci95"]
        out = (f"{arm} captures {cap['share'] * 100:.0f}% (95% interval {lo * 100:.0f}% to {hi * 100:.0f}%) of the "
               f"crowd relabel's gain over raw ({cap['gain'] * 100:+.2f} of {ref:+.2f} points).")
    why = caveat({"per_seed": entry["seeds"]}, preset)
    if why:
        out += f" ({why}: indicative only.)"
    return out


def crowd_prior_text(entry: dict, preset: str | None = None, which: str = "full") -> str:
    """One line splitting the crowd relabel's gain over raw into a change of class prior and the rest: ``entry`` is a
    yardstick summary's ``crowd_prior``; ``which`` "full" or "without_leaked"."""
    p, b = entry["prior"][which], entry["beyond"][which]

    def pts(d):
        return f"{d['difference'] * 100:+.2f} points (95% interval {d['ci95'][0] * 100:+.2f} to {d['ci95'][1] * 100:+.2f})"
    out = (f"Of the crowd relabel's {(p['difference'] + b['difference']) * 100:+.2f} points over raw, {pts(p)} come "
           "from its class shares alone: raw's own models moved to the crowd arm's training class shares, without "
           f"retraining; the crowd relabel beats those by {pts(b)}, what its labels taught image by image. A recipe "
           "that only shifts class shares gains the first part without learning anything about faces; curated − "
           "control (same class counts) is the pair a class shift cannot move.")
    why = caveat({"per_seed": entry["seeds"]}, preset)
    if why:
        out += f" ({why}: indicative only.)"
    return out


def verdict(diff: dict, preset: str | None = None, against: str = "raw") -> str:
    d, (lo, hi) = diff["difference"], diff["ci95"]
    pts = f"{d * 100:+.2f} points (95% interval {lo * 100:+.2f} to {hi * 100:+.2f})"
    if lo <= 0 <= hi:
        out = f"{pts}: within noise — no measurable difference."
    else:
        out = f"{pts}: {'better' if d > 0 else 'worse'} than {against}, beyond noise."
    why = caveat(diff, preset)
    if why:
        out += (f" ({why}: indicative only — a verdict needs {MIN_SEEDS}+ seeds of the standard or full preset.)")
    return out
