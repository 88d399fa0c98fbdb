"""One training run: assemble data, fit with early stopping on val, evaluate on the untouched test split.

Run folder ``cache/datasets/<name>/runs/<run_id>/``::

    config.json     source, recipe, preset, seed, classes, data sizes
    status.json     running | done | cancelled | failed (+ error), replaced atomically
    history.json    one row per finished epoch (loss, accuracy, val_loss, val_accuracy, images/s, seconds)
    metrics.json    test and leakage-aware test metrics with 95% bootstrap intervals (done runs only)
    test_probs.npy  class probabilities per test image (sorted by id), for paired comparisons
    model.keras     the trained model — written last, atomically: a cancelled or failed run never has one
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from fer_core import datasets
from fer_core.errors import Cancelled, FerError, InvalidInput
from fer_core.fsutil import atomic_path
from fer_core.progress import CancelToken, ProgressFn, atomic_write_json, check_cancel, emit
from fer_core.train import data as data_mod
from fer_core.train import presets as presets_mod
from fer_core.train.runs import (delete_run, list_runs, new_run_id, predict, run_info,  # noqa: F401  (this module's
                                 runs_root)                                              # face for its callers)


def _compile(model, p: presets_mod.Preset, steps_per_epoch: int, soft: bool = False):
    import keras

    cosine = keras.optimizers.schedules.CosineDecay(p.lr, decay_steps=max(1, p.epochs * steps_per_epoch),
                                                    warmup_target=None)
    if p.optimizer == "sgd":
        opt = keras.optimizers.SGD(cosine, momentum=0.9, nesterov=True, weight_decay=5e-4)
    else:
        opt = keras.optimizers.Adam(cosine if p.lr_decay == "cosine" else p.lr)
    if soft:   # targets are distributions (soft labels); accuracy compares argmaxes
        loss, metric = keras.losses.CategoricalCrossentropy(), keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss, metric = keras.losses.SparseCategoricalCrossentropy(), "accuracy"
    model.compile(optimizer=opt, loss=loss, metrics=[metric], jit_compile=False)
    return model


def fit(x: np.ndarray, y: np.ndarray, n_classes: int, p: presets_mod.Preset, seed: int,
        val: tuple[np.ndarray, np.ndarray] | None = None, progress: ProgressFn | None = None,
        cancel: CancelToken | None = None, history_path: Path | None = None, stage: str = "train",
        soft: np.ndarray | None = None, class_weight: dict[int, float] | None = None,
        checkpoint: Path | None = None):
    """Build and train a model of preset ``p``; returns (model, history rows). Raises Cancelled. ``soft``:
    per-image target distributions (soft labels) instead of ``y``. ``class_weight``: per-class loss weights
    (else the preset's balance decides). ``checkpoint``: a folder where the state after every finished epoch is
    kept (model with its optimizer, early-stopping and learning-rate state, history); when it holds one, training
    continues from there (:func:`load_checkpoint`) — a killed run loses at most the epoch it was in."""
    import keras

    from fer_core.train import augment, model as model_mod

    device = model_mod.configure_device(seed)
    size = x.shape[1]
    kw = {"width": p.width} if p.model == "compact" else {}
    feeder = augment.make_feeder(x, y, p.batch_size, seed, p.augment, "sampler" if p.balance == "sampler" else "none",
                                 targets=soft, epoch_images=p.epoch_images)
    steps = len(feeder)
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None:
        model = keras.models.load_model(checkpoint / state["model"])   # weights and optimizer (step count, lr)
        saved = (state.get("rng") or {}).get("values", [])
        mine = _rng_variables(model)
        if len(saved) == len(mine):       # by position: a loaded model numbers its generators afresh
            for var, value in zip(mine, saved):
                var.assign(np.asarray(value, dtype=var.dtype))
        start = int(state["epoch"])
        rows: list[dict] = list(state["rows"])
        feeder.epoch = start            # the data order and augmentation of epoch k are seeded by (seed, k)
        feeder._order()
    else:
        model = model_mod.build(p.model, size, n_classes, **kw)
        _compile(model, p, steps, soft=soft is not None)
        start, rows = 0, []
    total = steps * p.epochs

    class _Cb(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.time()
            self.done = start * steps
            self.first = self.done
            self.last = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.te = time.time()
            self.seen = 0

        def on_train_batch_end(self, batch, logs=None):
            self.done += 1
            self.seen += min(p.batch_size, feeder.images - batch * p.batch_size)
            if cancel is not None and cancel.cancelled:
                self.model.stop_training = True
                raise Cancelled("Training cancelled.")
            now = time.time()
            if now - self.last > 0.5 or self.done == total:
                self.last = now
                el = now - self.te
                ips = self.seen / el if el > 0 else 0.0
                rate = (self.done - self.first) / max(now - self.t0, 1e-9)
                emit(progress, stage, self.done, total, "steps",
                     message=f"epoch {self.epoch + 1}/{p.epochs} · {ips:,.0f} images/s",
                     epoch=self.epoch + 1, epochs=p.epochs, step=batch + 1, steps=steps,
                     images_per_s=round(ips, 1), eta_s=round((total - self.done) / rate, 1) if rate else None,
                     loss=float((logs or {}).get("loss", np.nan)))

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            sec = time.time() - self.te
            lr = self.model.optimizer.learning_rate
            row = {"epoch": epoch + 1, "seconds": round(sec, 2), "images_per_s": round(feeder.images / max(sec, 1e-9), 1),
                   "lr": float(lr.numpy() if hasattr(lr, "numpy") else lr)}
            row.update({k: float(v) for k, v in logs.items() if k != "learning_rate"})
            rows.append(row)
            if history_path is not None:
                atomic_write_json(history_path, rows)

    cbs = [_Cb()]
    vd = None
    es = rlr = None
    if val is not None and len(val[1]):
        vd = (val[0][..., None].astype(np.float32),
              val[1] if soft is None else np.eye(n_classes, dtype=np.float32)[val[1]])
        if p.stops_early:
            es = _Resumable(keras.callbacks.EarlyStopping, ("wait", "best", "best_epoch"), state, "early_stopping",
                            monitor="val_accuracy", patience=p.patience, restore_best_weights=True, verbose=0)
            cbs.append(es)
        if p.optimizer == "adam" and p.lr_decay is None:
            rlr = _Resumable(keras.callbacks.ReduceLROnPlateau, ("wait", "best", "cooldown_counter"), state,
                             "reduce_lr", monitor="val_loss", factor=0.5, patience=max(2, (p.patience or 6) // 2),
                             verbose=0)
            cbs.append(rlr)
    if state is not None and es is not None and state.get("best_weights"):
        with np.load(checkpoint / state["best_weights"]) as z:
            es.restore["best_weights"] = [z[f"w{i}"] for i in range(len(z.files))]
    if checkpoint is not None:       # last: it saves what the callbacks above decided at this epoch's end
        cbs.append(_Checkpoint(checkpoint, rows, es, rlr))
    cw = class_weight if class_weight is not None else (
        augment.class_weights(y, n_classes) if p.balance == "class_weight" else None)
    emit(progress, stage, start * steps, total, "steps",
         message=f"epoch {start + 1}/{p.epochs} ({device})" + (f", resumed after epoch {start}" if start else ""))
    if start < p.epochs:
        model.fit(feeder, epochs=p.epochs, initial_epoch=start, validation_data=vd, callbacks=cbs, class_weight=cw,
                  verbose=0, validation_batch_size=512)
    elif es is not None and es.restore.get("best_weights") is not None:   # killed after its last epoch
        model.set_weights(es.restore["best_weights"])
    check_cancel(cancel)
    return model, rows


CHECKPOINT_STATE = "state.json"


def load_checkpoint(folder: Path | None) -> dict | None:
    """The state saved after the last finished epoch in ``folder`` (None when there is none or it is unreadable).
    The state names its own model and best-weights files, written before it: a process killed while saving an
    epoch leaves the previous epoch's state and files intact."""
    if folder is None or not (folder / CHECKPOINT_STATE).exists():
        return None
    try:
        st = json.loads((folder / CHECKPOINT_STATE).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(st, dict) and "epoch" in st and (folder / st.get("model", "-")).exists()):
        return None
    if st.get("best_weights") and not (folder / st["best_weights"]).exists():
        return None
    return st


def _Resumable(cls, keys: tuple[str, ...], state: dict | None, name: str, **kw):
    """A Keras callback of ``cls`` whose counters (``keys``) continue from a checkpoint instead of starting again
    (Keras resets them in on_train_begin)."""

    class R(cls):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            for k, v in self.restore.items():
                setattr(self, k, v)

    cb = R(**kw)
    cb.restore = {k: v for k, v in ((state or {}).get(name) or {}).items() if k in keys}
    cb.state_keys, cb.state_name = keys, name
    return cb


def _rng_variables(model) -> list:
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _Checkpoint(folder: Path, rows: list, es, rlr):
    import keras

    class C(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            folder.mkdir(parents=True, exist_ok=True)
            n = epoch + 1
            mname, bname = f"model-{n}.keras", None
            with atomic_path(folder / mname) as tmp:
                self.model.save(tmp)
            if es is not None and es.best_weights is not None:
                bname = f"best-{n}.npz"
                with atomic_path(folder / bname) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **{f"w{i}": w for i, w in enumerate(es.best_weights)})
            # the random-number states (dropout's seed generator) are variables but not weights, so model.save
            # leaves them out: kept beside it, a resumed run draws the same dropout masks as an uninterrupted one
            rng = _rng_variables(self.model)
            st_rng = {"paths": [v.path for v in rng], "values": [np.asarray(v.numpy()).tolist() for v in rng]}
            st = {"epoch": n, "model": mname, "best_weights": bname, "rows": rows, "rng": st_rng,
                  **{cb.state_name: {k: _plain(getattr(cb, k)) for k in cb.state_keys} for cb in (es, rlr)
                     if cb is not None}}
            atomic_write_json(folder / CHECKPOINT_STATE, st)   # after the files it names
            for f in folder.iterdir():                        # then the previous epoch's files go
                if f.name not in (CHECKPOINT_STATE, mname, bname) and not f.name.startswith("."):
                    f.unlink(missing_ok=True)

    return C()


PRIORS = ("kept", "source")


def prior_weights(source_counts: dict[str, int], kept_counts: dict[str, int]) -> dict[str, float]:
    """Per-class loss weights under which the kept training images carry each class with the share it has in the
    source's whole training split (``prior="source"``): w_c = (source_c / N_source) / (kept_c / N_kept). The
    weights average 1 over the kept images, so the loss keeps its scale; a class with no kept image gets 1.

    Why: the default recipe's duplicate and leak cuts remove copies, and FER2013's copies are not spread evenly
    (exact copies alone are 13.7% of ``surprise`` and 8.5% of ``disgust`` training images, 1.7% of ``happy``), so
    curation also shifts the class prior the model learns — ``disgust`` 436 → 257 images (−41%) against ``happy``
    −7%. Restoring the source's prior keeps *what* was removed and undoes *how much of each class* went. (Measured
    so far, bench/RESULTS.md, issue 17: correcting one curated model's test probabilities for this shift after the
    fact did not close its gap to raw — the gap is not the prior alone; this option is there to test it in
    training and for people who want the source's class shares.)"""
    n_src = sum(source_counts.get(c, 0) for c, k in kept_counts.items() if k)   # shares among the classes kept
    n_kept = sum(kept_counts.values())
    out = {}
    for c, k in kept_counts.items():
        s_ = source_counts.get(c, 0)
        out[c] = float((s_ / n_src) / (k / n_kept)) if k and s_ and n_src and n_kept else 1.0
    return out


def source_train_counts(name: str, classes: list[str], cache=None) -> dict[str, int]:
    """Images per class in the dataset's whole training split (its stored split assignment applied), before any
    recipe, with the given labels."""
    from fer_core import splits

    ds = datasets.load(name, cache)
    cat = splits.apply(ds, ds.catalog)
    vc = cat.loc[cat["split"] == "train", "label"].value_counts()
    return {c: int(vc.get(c, 0)) for c in classes}


def train(name: str, source: str = "raw", recipe=None, export_dir=None, preset: str = "smoke", seed: int = 0,
          use_overrides: bool = True, run_id: str | None = None, group: str | None = None, arm: str | None = None,
          progress: ProgressFn | None = None, cancel: CancelToken | None = None, cache=None,
          n_boot: int = 1000, eval_on: list | tuple = (), soft: bool = False, prior: str = "kept",
          resume: bool = False, **preset_changes) -> dict:
    """Train and evaluate one run; returns its metrics dict (also in the run folder). ``eval_on``: other
    yardsticks (``DATASET[:SPLIT]``) to evaluate the trained model on as well (``metrics["yardsticks"]``).
    ``prior``: "kept" (the classes as the kept images have them) or "source" (loss weights that give each class
    the share it has in the dataset's whole training split before the recipe: :func:`prior_weights`).

    Every finished epoch is checkpointed in the run folder. ``resume``: an unfinished run ``run_id`` (killed,
    failed, cancelled) continues from its last finished epoch when its data, preset and seed are the same (else it
    starts again from epoch 1, saying so in its config); the config lists the epochs it was resumed after. The data
    order and augmentation of each epoch are seeded by (seed, epoch), so a resumed run sees what an uninterrupted
    one would."""
    p = presets_mod.get(preset, **preset_changes)
    if prior not in PRIORS:
        raise InvalidInput(f"Unknown class prior '{prior}'.", "Use --prior kept or --prior source.")
    if prior == "source" and p.balance == "class_weight":
        raise InvalidInput("--prior source and --balance class_weight both set the class weights.",
                           "Pick one: the source's class shares (--prior source) or equal classes (--balance).")
    if eval_on:    # checked before hours of training, not after
        from fer_core.train import yardstick

        eval_on = [yardstick.parse_target(t) if isinstance(t, str) else t for t in eval_on]
        for t in eval_on:
            datasets.load(t.dataset, cache)
    run_id = run_id or new_run_id(p.name, seed)
    rdir = runs_root(name, cache) / run_id
    old_cfg = None
    if resume and rdir.is_dir():
        info = run_info(name, run_id, cache)
        if info["status"].get("state") == "running":
            raise InvalidInput(f"Run {run_id} of {name} is still training (process {info['status'].get('pid')}).",
                               "Wait for it, or cancel it first.")
        if info["status"].get("state") == "done":
            raise InvalidInput(f"Run {run_id} of {name} has already finished.", "Start a new run instead.")
        old_cfg = info["config"]
        (rdir / "metrics.json").unlink(missing_ok=True)
    else:
        rdir.mkdir(parents=True, exist_ok=False)
    status = {"state": "running", "pid": os.getpid(), "started": time.time()}
    atomic_write_json(rdir / "status.json", status)
    ckpt = rdir / "checkpoint"
    try:
        td = data_mod.assemble(name, source, recipe, use_overrides, export_dir, max_train=p.max_train, seed=seed,
                               cache=cache, progress=progress, cancel=cancel, soft=soft)
        config = {"run_id": run_id, "dataset": name, "source": td.source, "preset": p.to_dict(), "seed": seed,
                  "classes": td.classes, "group": group, "arm": arm,
                  "sizes": {"train": len(td.train), "val": len(td.val), "test": len(td.test)},
                  "train_label_counts": {c: int((td.train.y == i).sum()) for i, c in enumerate(td.classes)},
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if old_cfg is not None:
            same = {k: old_cfg.get(k) for k in ("source", "preset", "seed", "classes", "sizes", "train_label_counts")} \
                == {k: json.loads(json.dumps(config[k])) for k in ("source", "preset", "seed", "classes", "sizes",
                                                                    "train_label_counts")}
            state = load_checkpoint(ckpt)
            config["resumed"] = list(old_cfg.get("resumed", []))
            if same and state is not None:
                config["resumed"].append(int(state["epoch"]))
            else:
                shutil.rmtree(ckpt, ignore_errors=True)
                config["restarted"] = ("its data, preset or seed changed" if not same
                                       else "no finished epoch was saved")
        else:
            shutil.rmtree(ckpt, ignore_errors=True)
        cw = None
        if prior == "source":
            src = source_train_counts(name, td.classes, cache)
            w = prior_weights(src, config["train_label_counts"])
            cw = {i: w[c] for i, c in enumerate(td.classes)}
            config["prior"] = {"mode": "source", "source_counts": src, "weights": w}
        atomic_write_json(rdir / "config.json", config)
        if eval_on:   # every yardstick can judge these classes (no test split, no shared class: refused now)
            from fer_core.train import yardstick

            for t in eval_on:
                yardstick.test_set(t, td.classes, name, cache)
        t0 = time.time()
        model, hist = fit(td.train.x, td.train.y, len(td.classes), p, seed, (td.val.x, td.val.y), progress, cancel,
                          rdir / "history.json", soft=td.train.soft, class_weight=cw, checkpoint=ckpt)
        train_s = time.time() - t0
        emit(progress, "evaluate", 0, 1, "runs")
        probs = predict(model, td.test.x, p.tta)
        val_probs = predict(model, td.val.x, p.tta)
        check_cancel(cancel)
        from fer_core.train.evaluate import evaluate

        metrics = evaluate(td.test.y, probs, td.classes, td.test_leaked, n_boot=n_boot, seed=seed)
        metrics.update({"run_id": run_id, "dataset": name, "arm": arm, "group": group, "seed": seed, "preset": p.name,
                        "prior": prior,
                        "val_accuracy": float((val_probs.argmax(1) == td.val.y).mean()),
                        "epochs_run": len(hist), "train_seconds": round(train_s, 1),
                        "train_images": len(td.train), "images_per_epoch": p.epoch_images or len(td.train),
                        "best_epoch": int(np.argmax([h.get("val_accuracy", 0) for h in hist]) + 1)
                        if hist else None})
        with atomic_path(rdir / "test_probs.npy") as tmp:
            np.save(tmp, probs)
        atomic_write_json(rdir / "test_ids.json", [str(i) for i in td.test.ids])
        atomic_write_json(rdir / "metrics.json", metrics)
        with atomic_path(rdir / "model.keras") as tmp:
            model.save(tmp)
        shutil.rmtree(ckpt, ignore_errors=True)       # the finished model replaces the epochs' checkpoints
        if eval_on:
            from fer_core.train import yardstick

            atomic_write_json(rdir / "status.json", {**status, "state": "done", "finished": time.time()})
            metrics["yardsticks"] = {}
            for t in eval_on:   # a yardstick that fails now is reported; the trained model stays done and saved
                try:
                    ym = yardstick.evaluate_run(name, run_id, t, cache, n_boot, model=model, progress=progress,
                                                cancel=cancel)
                except FerError as exc:
                    metrics["yardsticks"][t.key] = {"yardstick": t.key, "error": exc.to_dict()}
                    continue
                metrics["yardsticks"][ym["yardstick"]] = ym
        atomic_write_json(rdir / "status.json", {**status, "state": "done", "finished": time.time()})
        emit(progress, "evaluate", 1, 1, "runs")
        return metrics
    except Cancelled:
        atomic_write_json(rdir / "status.json", {**status, "state": "cancelled", "finished": time.time()})
        raise
    except FerError as exc:
        atomic_write_json(rdir / "status.json", {**status, "state": "failed", "error": exc.to_dict(), "finished": time.time()})
        raise
    except Exception as exc:
        atomic_write_json(rdir / "status.json", {**status, "state": "failed", "finished": time.time(),
                                                 "error": {"code": "bug", "message": f"{type(exc).__name__}: {exc}", "hint": ""}})
        raise


