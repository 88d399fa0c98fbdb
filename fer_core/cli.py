"""Command line: ``python -m fer_core <command>`` — the same engine as the app, headless.

Every command prints a progress bar on stderr, a clear error (what happened, what to do next) and
exits non-zero on failure: 1 for errors, 2 for usage errors, 130 when cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from fer_core.errors import Cancelled, FerError
from fer_core.progress import CancelToken, FileProgress, TqdmProgress, combine


class Ctx:
    """What every command gets: cache root, progress sinks, cancel token."""

    def __init__(self, args):
        self.args = args
        self.cache = args.cache
        self.cancel = CancelToken(args.cancel_file)
        self.file_progress = FileProgress(args.progress_json) if args.progress_json else None
        self.bar = TqdmProgress(disable=args.quiet)
        self.progress = combine(self.bar, self.file_progress, self._say_waiting)
        self.result: dict = {}   # what a background job reports when done (shown by the UI)

    def _say_waiting(self, ev) -> None:
        """A writer waiting for a dataset's lock says so once, on its own line (not inside a bar)."""
        if ev.stage == "waiting" and not self.args.quiet:
            print(f"Waiting: {ev.message.removeprefix('waiting: ')} …", file=sys.stderr, flush=True)

    def out(self, text: str = "") -> None:
        print(text, flush=True)


# ---- commands -------------------------------------------------------------------------------

def cmd_datasets(ctx: Ctx) -> int:
    from fer_core import catalog, datasets
    from fer_core.sources import registry

    imported = []
    for name in datasets.list_datasets(ctx.cache):
        ds = datasets.load(name, ctx.cache)
        cat = ds.catalog

        def nested(by):
            t = catalog.counts(cat, by).drop(columns="total")
            return {str(i): {str(c): int(v) for c, v in row.items()} for i, row in t.iterrows()}

        imported.append({"name": name, "spec": ds.meta.get("spec"), "images": int(len(cat)),
                         "rejected": int(ds.meta.get("n_rejected", 0)), "source": ds.meta.get("source"),
                         "by_usage": nested("usage"), "by_split": nested("split"),
                         "catalog_hash": ds.meta.get("catalog_hash")})
    if ctx.args.json:
        reg = [{"name": s.name, "title": s.title, "kaggle_slug": s.kaggle_slug, "reader": s.reader,
                "layout": s.layout, "verified": s.verified} for s in registry.SPECS.values()]
        ctx.out(json.dumps({"imported": imported, "registry": reg}, indent=1))
        return 0
    ctx.out("Known datasets:")
    for s in registry.SPECS.values():
        ctx.out(f"  {s.name:12s} {s.kaggle_slug or '(local folders)':55s} {s.title}  [{s.verified}]")
    ctx.out("")
    if not imported:
        ctx.out("Nothing imported yet: `python -m fer_core download fer2013` or `python -m fer_core import PATH --name N`.")
    for d in imported:
        ctx.out(f"{d['name']}: {d['images']:,} images ({d['rejected']:,} rejected at import), spec {d['spec']}")
        for split, labs in d["by_split"].items():
            ctx.out(f"  {split:6s} {sum(labs.values()):7,d}  " + "  ".join(f"{k} {v:,}" for k, v in labs.items()))
    return 0


def cmd_download(ctx: Ctx) -> int:
    from fer_core import acquire

    res = acquire.download_and_import(ctx.args.what, name=ctx.args.name, progress=ctx.progress,
                                      cancel=ctx.cancel, cache=ctx.cache)
    ctx.bar.close()
    ctx.out(res.summary())
    _print_rejected(ctx, res.dataset)
    ctx.result = {"dataset": res.dataset.name, "summary": res.summary()}
    return 0


def cmd_import(ctx: Ctx) -> int:
    from fer_core import datasets
    from fer_core.config import ImportLimits

    limits = ImportLimits(max_members=ctx.args.max_members, max_uncompressed_bytes=int(ctx.args.max_gib * 2**30))
    opts = {"crop_margin": ctx.args.crop_margin} if ctx.args.crop_margin is not None else None
    res = datasets.import_dataset(ctx.args.path, ctx.args.name, spec=ctx.args.spec, limits=limits,
                                  progress=ctx.progress, cancel=ctx.cancel, cache=ctx.cache,
                                  allowed_roots=[Path(r) for r in ctx.args.within] if ctx.args.within else None,
                                  reader_options=opts)
    ctx.bar.close()
    ctx.out(res.summary())
    _print_rejected(ctx, res.dataset)
    ctx.result = {"dataset": res.dataset.name, "summary": res.summary()}
    return 0


def _ws(ctx: Ctx):
    from fer_core.workspace import Workspace

    return Workspace(ctx.args.name, ctx.cache)


def _engine_args(s, what: str) -> None:
    s.add_argument("--engine", choices=["local", "ray"], default=None,
                   help=f"where the work runs: this machine (default, $FER_ENGINE) or a Ray cluster ({what})")
    s.add_argument("--address", default=None, help="the Ray cluster: ray://HOST:10001, HOST:PORT or auto "
                   "($RAY_ADDRESS; none: a local Ray started for this command)")


def cmd_scan(ctx: Ctx) -> int:
    fams = [f.strip() for f in ctx.args.signals.split(",") if f.strip()]
    res = _ws(ctx).scan(fams, workers=ctx.args.workers, batch_size=ctx.args.batch_size, progress=ctx.progress,
                        cancel=ctx.cancel, engine=ctx.args.engine, address=ctx.args.address)
    ctx.bar.close()
    ctx.out(res.summary())
    ctx.result = {"dataset": ctx.args.name, "summary": res.summary()}
    return 0


def _recipe_for(ctx: Ctx, ws, inputs=None):
    if ctx.args.recipe:
        return ws.recipe(Path(ctx.args.recipe))
    return ws.default_recipe(inputs=inputs)


def cmd_decide(ctx: Ctx) -> int:
    import time

    from fer_core import decisions, recipe as recipe_mod

    ws = _ws(ctx)
    inputs = ws.inputs()
    rec = _recipe_for(ctx, ws, inputs)
    if ctx.args.class_cap is not None:
        if not 0 <= ctx.args.class_cap <= 1:
            from fer_core.errors import InvalidInput
            raise InvalidInput(f"--class-cap must be a share between 0 and 1, not {ctx.args.class_cap:g}.",
                               "Pass e.g. --class-cap 0.25 (the cuts remove at most 25% of any class).")
        rec = rec.replace(class_cap=ctx.args.class_cap)
    t0 = time.perf_counter()
    dec = ws.decide(rec, overrides=not ctx.args.no_overrides, inputs=inputs)
    ms = (time.perf_counter() - t0) * 1000
    summary = recipe_mod.summarize(inputs.signals, dec)
    ctx.out(f"recipe: {ctx.args.recipe or 'data-derived default'} (scope: {', '.join(rec.scope)}); decided in {ms:.0f} ms")
    ctx.out(recipe_mod.format_summary(summary))
    if ctx.args.out:
        p = decisions.write_decisions(decisions.decisions_table(inputs, dec), ctx.args.out)
        ctx.out(f"decisions written to {p}")
    ctx.result = {"dataset": ctx.args.name, "summary": f"{summary['kept']:,} kept, {summary['rejected']:,} rejected"}
    return 0


def cmd_split(ctx: Ctx) -> int:
    from fer_core import splits

    a = ctx.args
    ws = _ws(ctx)
    if a.show:
        d = ws.split_assignment()
    else:
        d = ws.split(by=a.by, seed=a.seed, ratios=splits.parse_ratios(a.ratios), clear=a.clear,
                     threshold=a.threshold)
    if a.clear:
        ctx.out(f"{a.name}: split assignment removed (the import's own splits are used).")
    else:
        ctx.out(splits.format_description(a.name, d))
    ctx.result = {"dataset": a.name, "split": d}
    return 0


def cmd_recipe(ctx: Ctx) -> int:
    from fer_core import recipe as recipe_mod

    sig = _ws(ctx).signals(require=("quality",))
    rec = recipe_mod.default_recipe(sig, name=ctx.args.recipe_name or f"{ctx.args.name}-default")
    if ctx.args.out:
        rec.save(ctx.args.out)
        ctx.out(f"data-derived default recipe written to {ctx.args.out}")
    else:
        ctx.out(rec.to_yaml())
    return 0


def cmd_export(ctx: Ctx) -> int:
    from fer_core import export, recipe as recipe_mod

    from fer_core import collections

    a = ctx.args
    ws = _ws(ctx)
    collections.originals(ws.dataset, ctx.cache)   # a stale collection: said first (before its signals are asked)
    rec = ws.recipe(Path(a.recipe)) if a.recipe else recipe_mod.default_recipe(ws.signals())
    clahe = export.Clahe(a.clahe_clip, a.clahe_tile) if a.clahe else None
    out = Path(a.out) if a.out else None
    export_name = a.export_name or (out.name if out else f"{a.name}-clean")
    res = ws.export(rec, export_name, clahe=clahe, csv=a.csv, use_overrides=not a.no_overrides, out_dir=out,
                    progress=ctx.progress, cancel=ctx.cancel)
    ctx.bar.close()
    if a.zip:
        z = export.zip_export(res.path)
        ctx.out(f"zip: {z}")
    ctx.out(res.summary())
    m = res.manifest
    for split, labs in m["counts"]["after"].items():
        before = sum(m["counts"]["before"].get(split, {}).values())
        ctx.out(f"  {split:6s} {sum(labs.values()):7,d} of {before:,}")
    ctx.result = {"dataset": a.name, "export": str(res.path), "summary": res.summary()}
    return 0


def cmd_link(ctx: Ctx) -> int:
    from fer_core import links

    a = ctx.args
    res = links.link(a.a, a.b, a.max_mean, cache=ctx.cache, progress=ctx.progress, cancel=ctx.cancel)
    ctx.bar.close()
    ctx.out(res.summary())
    ctx.result = {"dataset": a.a, "summary": res.summary()}
    return 0


def cmd_map(ctx: Ctx) -> int:
    from fer_core import embedmap

    out = embedmap.compute_map(ctx.args.name, ctx.args.method, progress=ctx.progress, cancel=ctx.cancel, cache=ctx.cache)
    ctx.bar.close()
    ctx.out(f"{ctx.args.method} map of {len(out):,} embeddings written")
    ctx.result = {"dataset": ctx.args.name, "summary": f"{ctx.args.method} map of {len(out):,} images"}
    return 0


def _fmt_block(b: dict | None) -> str:
    if not b:
        return "n/a"
    lo, hi = b["ci95"]["accuracy"]
    flo, fhi = b["ci95"]["macro_f1"]
    return (f"accuracy {b['accuracy']:.4f} [{lo:.4f}, {hi:.4f}], macro-F1 {b['macro_f1']:.4f} [{flo:.4f}, {fhi:.4f}]"
            f" on {b['n']:,} images")


def cmd_labels(ctx: Ctx) -> int:
    from fer_core.train import labels

    a = ctx.args
    cfg = labels.LabelsConfig(folds=a.folds, epochs=a.epochs, seed=a.seed,
                              sources=tuple(s.strip() for s in a.sources.split(",") if s.strip()))
    res = labels.compute(a.name, cfg, progress=ctx.progress, cancel=ctx.cancel, cache=ctx.cache, engine=a.engine,
                         address=a.address)
    ctx.bar.close()
    by = ", ".join(f"{k} {v:.1%}" for k, v in res["oof_accuracy_by_source"].items())
    ctx.out(f"label signals of {a.name}: {res['train_images']:,} training images, {cfg.folds} folds, sources "
            f"{'+'.join(res['sources'])}; out-of-fold accuracy {res['oof_accuracy']:.1%} ({by}); cleanlab flags "
            f"{res['cleanlab_issues']:,}; {res['seconds']:.0f} s")
    if res.get("note"):
        ctx.out("note: " + res["note"])
    ctx.result = {"dataset": a.name, "summary": f"label signals: out-of-fold accuracy {res['oof_accuracy']:.1%}, "
                  f"{res['cleanlab_issues']:,} flagged by cleanlab"}
    return 0


def cmd_train(ctx: Ctx) -> int:
    from fer_core.train import runner

    a = ctx.args
    if a.recipe and a.export:
        from fer_core.errors import InvalidInput
        raise InvalidInput("Give --recipe or --export, not both.", "One source per run.")
    source = "recipe" if a.recipe else "export" if a.export else "raw"
    m = runner.train(a.name, source, a.recipe, a.export, preset=a.preset, seed=a.seed, run_id=a.run_id,
                     use_overrides=not a.no_overrides, progress=ctx.progress, cancel=ctx.cancel, cache=ctx.cache,
                     epochs=a.epochs, max_train=a.max_train, balance=a.balance, augment=a.augment, lr_decay=a.lr_decay,
                     eval_on=a.eval_on or (), soft=a.soft, prior=a.prior, resume=a.resume)
    ctx.bar.close()
    ctx.out(f"run {m['run_id']}: {m['train_images']:,} training images, {m['epochs_run']} epochs, "
            f"{m['train_seconds']:.0f} s; val accuracy {m['val_accuracy']:.4f}")
    ctx.out(f"test (official split, untouched): {_fmt_block(m['test'])}")
    ctx.out(f"test without the {m.get('test_leaked_images', 0):,} images that have a training copy: "
            f"{_fmt_block(m['test_without_leaked'])}")
    for ym in (m.get("yardsticks") or {}).values():
        _print_yardstick(ctx, ym)
    ctx.result = {"dataset": a.name, "run_id": m["run_id"],
                  "summary": f"test accuracy {m['test']['accuracy']:.1%}, macro-F1 {m['test']['macro_f1']:.3f}"}
    return 0


def _print_yardstick(ctx: Ctx, ym: dict) -> None:
    if ym.get("error"):
        ctx.out(f"{ym['yardstick']}: not evaluated — {ym['error'].get('message')} {ym['error'].get('hint', '')}")
        return
    aside = ym.get("set_aside", {})
    unseen = ", ".join(f"{k} {v:,}" for k, v in aside.get("unseen_class", {}).items())
    ctx.out(f"{ym['yardstick']} ({ym['images']:,} images; set aside: {aside.get('crowd_unsure', 0):,} crowd "
            f"tie/unknown/not-a-face{', classes the model never saw: ' + unseen if unseen else ''}): "
            f"{_fmt_block(ym['test'])}")
    if ym.get("test_without_leaked"):
        ctx.out(f"{ym['yardstick']} without the {ym.get('test_leaked_images', 0):,} images the model may have seen "
                f"({ym['leakage']}): {_fmt_block(ym['test_without_leaked'])}")
    else:
        ctx.out(f"{ym['yardstick']} leakage-aware figure: {ym['leakage']}")


def cmd_evaluate(ctx: Ctx) -> int:
    from fer_core.train import yardstick

    a = ctx.args
    name = a.dataset or yardstick.find_run(a.run_id, ctx.cache)
    out = []
    for t in a.on:
        ym = yardstick.evaluate_run(name, a.run_id, t, ctx.cache, progress=ctx.progress, cancel=ctx.cancel)
        ctx.bar.close()
        _print_yardstick(ctx, ym)
        out.append(f"{ym['yardstick']} accuracy {ym['test']['accuracy']:.1%}")
    ctx.result = {"dataset": name, "run_id": a.run_id, "summary": "; ".join(out)}
    return 0


def cmd_ab(ctx: Ctx) -> int:
    from fer_core.errors import InvalidInput
    from fer_core.train import ab

    a = ctx.args
    budget = {"epochs": a.epochs, "max_train": a.max_train, "lr_decay": a.lr_decay}
    # resuming, or comparing a new recipe against an earlier A/B's raw runs: its preset and budget unless given
    ref = ab.load_ab(a.name, a.resume or a.baseline, ctx.cache) if (a.resume or a.baseline) else None
    if a.resume and ref is None:
        raise InvalidInput(f"There is no A/B '{a.resume}' of {a.name} to resume.",
                           "Start one with --recipe R.yaml, or check the id on the Train page's A/B tab.")
    if a.resume:
        seeds = list(range(a.seed0, a.seed0 + a.seeds)) if a.seeds else []
    else:
        seeds = list(range(a.seed0, a.seed0 + (a.seeds or (len(ref["seeds"]) if ref else 3))))
    preset = a.preset or (ref["preset"] if ref else "standard")
    if ref:
        budget = {k: (v if v is not None else ref.get("changes", {}).get(k)) for k, v in budget.items()}
    arms = [x.strip() for x in a.arms.split(",") if x.strip()] if a.arms else None
    # the same steps or the same passes: a resumed A/B keeps its own (the raw arm is alike under both, so a
    # baseline's raw runs serve either)
    held = a.budget or ((ref or {}).get("budget", "passes") if a.resume else None)   # None: run_ab's default
    doc = ab.run_ab(a.name, a.recipe, seeds, preset, relabel_arm=False if a.no_relabel_arm else None,
                    progress=ctx.progress, cancel=ctx.cancel, cache=ctx.cache, ab_id=a.resume or a.ab_id,
                    resume=bool(a.resume), baseline=a.baseline, arms=arms, eval_on=a.eval_on or (), budget=held,
                    **budget)
    ctx.bar.close()
    res = doc["result"]
    for note in res.get("notes", []):
        ctx.out(f"Note: {note}")
    for where, r0 in [(f"{a.name} test", res)] + list(res.get("yardsticks", {}).items()):
        ctx.out(f"— on {where}:")
        for arm, r in r0["arms"].items():
            accs = ", ".join(f"{x['accuracy']:.4f}" for x in r["runs"])
            mean = f"{r['mean_accuracy']:.4f}" if r["mean_accuracy"] is not None else "-"
            ctx.out(f"{arm:8s} accuracy per seed: {accs} (mean {mean})")
        for arm, d in r0["differences"].items():
            base = d.get("against", "raw")
            arm = arm.split("-")[0]
            ctx.out(f"{arm} − {base}, full: {ab.verdict(d['full'], doc['preset'], base)}")
            if d.get("without_leaked"):
                ctx.out(f"{arm} − {base}, without leaked images: {ab.verdict(d['without_leaked'], doc['preset'], base)}")
        for arm, c in r0.get("captured", {}).items():
            ctx.out(ab.captured_text(arm, c, doc["preset"]))
        if r0.get("crowd_prior"):
            ctx.out(ab.crowd_prior_text(r0["crowd_prior"], doc["preset"]))
        recall = ab.recall_table(r0)
        if recall is not None:
            ctx.out("recall per class (mean over seeds):\n" + recall.to_string(float_format=lambda v: f"{v:.2f}"))
    ctx.result = {"dataset": a.name, "ab_id": doc["ab_id"],
                  "summary": "; ".join(f"{k.split('-')[0]} − {v.get('against', 'raw')} {v['full']['difference'] * 100:+.2f} pts"
                                       for k, v in res["differences"].items())}
    return 0


def cmd_runs(ctx: Ctx) -> int:
    for r in _ws(ctx).runs():
        m = r["metrics"] or {}
        acc = f"{m['test']['accuracy']:.4f}" if m else "-"
        ctx.out(f"{r['run_id']:45s} {r['status'].get('state', '?'):9s} {r['config'].get('source', {}).get('kind', '?'):7s} test acc {acc}")
    return 0


def cmd_collection(ctx: Ctx) -> int:
    """collection create|build|list|show: several imported datasets, each with its recipe, merged into one dataset."""
    from fer_core import collections

    a = ctx.args
    if a.action == "list":
        names = collections.list_collections(ctx.cache)
        if a.json:
            ctx.out(json.dumps([{"name": n, **_collection_brief(n, ctx.cache)} for n in names], indent=1))
            return 0
        if not names:
            ctx.out("No collections yet: `python -m fer_core collection create NAME --members a,b`.")
        for n in names:
            b = _collection_brief(n, ctx.cache)
            state = "; ".join(b["stale"]) if b["stale"] else "up to date"
            ctx.out(f"{n:24s} {', '.join(b['members']):40s} {b['images'] if b['images'] is not None else '-':>8} images  "
                    f"{state}")
        return 0
    if a.action == "show":
        st = collections.status(a.name, ctx.cache)
        ctx.out(json.dumps(st, indent=1, default=str) if a.json else collections.format_status(st))
        ctx.result = {"dataset": a.name, "stale": st["stale"]}
        return 0
    if a.action == "create":
        col, res = collections.create(a.name, a.members, collections.parse_recipe_args(a.recipe), a.contempt, a.size,
                                      cache=ctx.cache, progress=ctx.progress, cancel=ctx.cancel,
                                      build_now=not a.no_build)
        ctx.bar.close()
        ctx.out(f"collection '{a.name}' written to {collections.definition_path(a.name, ctx.cache)}")
    else:
        res = collections.build(a.name, cache=ctx.cache, progress=ctx.progress, cancel=ctx.cancel)
        ctx.bar.close()
    if res is not None:
        ctx.out(res.summary())
        ctx.out(collections.format_status(collections.status(a.name, ctx.cache)))
        ctx.result = {"dataset": a.name, "summary": res.summary()}
    return 0


def _collection_brief(name: str, cache) -> dict:
    from fer_core import collections
    from fer_core.errors import FerError

    try:
        st = collections.status(name, cache)
    except FerError as exc:
        return {"members": [], "images": None, "stale": [exc.message]}
    return {"members": [m["dataset"] for m in st["definition"]["members"]],
            "images": st["record"]["images"] if st["record"] else None, "stale": st["stale"]}


def _print_rejected(ctx: Ctx, ds) -> None:
    rej = ds.rejected
    if len(rej):
        ctx.out(f"Rejected at import ({len(rej):,}); first ones:")
        for _, r in rej.head(10).iterrows():
            ctx.out(f"  {r['path']}: {r['reason']}")


class _exclusive:
    """Hold a per-key lock for the command's duration; wait (state "queued") while another holds it.

    The key ``dataset-<name>`` is the dataset's writer lock itself (:mod:`fer_core.locks`), so a job queued
    in the app, a CLI command and the engine's own writers all wait on one lock."""

    def __init__(self, ctx: Ctx):
        self.ctx, self.cm, self.announced = ctx, None, False

    def _queued(self, ev) -> None:
        fp = self.ctx.file_progress
        if fp and not self.announced:
            fp.state["queued"] = True
            fp.finish("running")
        self.announced = True
        self.ctx._say_waiting(ev)

    def __enter__(self):
        key = self.ctx.args.exclusive
        if not key:
            return self
        import re

        from fer_core import locks
        from fer_core.store_paths import jobs_root

        if key.startswith("dataset-"):
            name = key.removeprefix("dataset-")
            path = locks.lock_path(name, self.ctx.cache)
        else:
            name = key
            lock_dir = jobs_root(self.ctx.cache) / "locks"
            lock_dir.mkdir(exist_ok=True)
            path = lock_dir / (re.sub(r"[^\w.-]", "_", key) + ".lock")
        self.cm = locks.hold(path, name, self.ctx.args.command, wait=True, progress=self._queued,
                             cancel=self.ctx.cancel)
        self.cm.__enter__()
        if self.announced and self.ctx.file_progress:
            self.ctx.file_progress.state["queued"] = False
            self.ctx.file_progress.finish("running")
        return self

    def __exit__(self, *exc):
        if self.cm is not None:
            self.cm.__exit__(*exc)


# ---- parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_core", description="FER Curation Studio engine (headless).")
    p.add_argument("--cache", default=None, help="cache directory (default ./cache or $FER_CACHE_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--progress-json", default=None, help=argparse.SUPPRESS)  # used by background jobs
    p.add_argument("--cancel-file", default=None, help=argparse.SUPPRESS)
    p.add_argument("--exclusive", default=None, help=argparse.SUPPRESS)  # one job per key at a time
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("datasets", help="list known and imported datasets")
    s.add_argument("--json", action="store_true", help="machine-readable counts per usage/split × label")
    s.set_defaults(fn=cmd_datasets)

    s = sub.add_parser("download", help="download a dataset from Kaggle and import it")
    s.add_argument("what", help="registry name (e.g. fer2013) or Kaggle slug owner/name")
    s.add_argument("--name", default=None, help="name to register it under (default: the registry name)")
    s.set_defaults(fn=cmd_download)

    s = sub.add_parser("import", help="import a folder, a zip or a fer2013.csv from disk")
    s.add_argument("path")
    s.add_argument("--name", required=True)
    s.add_argument("--spec", default=None, help="layout (registry name); default: detected")
    s.add_argument("--max-members", type=int, default=2_000_000, help="zip or folder: most files allowed")
    s.add_argument("--max-gib", type=float, default=50.0, help="zip or folder: most (uncompressed) GiB allowed")
    s.add_argument("--crop-margin", type=float, default=None, metavar="SHARE",
                   help="ExpW: grow each face box by this share of its size on every side (default 0; recorded)")
    s.add_argument("--within", action="append", default=None, metavar="DIR",
                   help="read PATH only inside DIR (repeatable; the app passes its import folders)")
    s.set_defaults(fn=cmd_import)

    s = sub.add_parser("scan", help="compute signals (cached; resumes after an interruption)")
    s.add_argument("name")
    s.add_argument("--signals", default="quality,duplicates",
                   help="comma-separated families: quality, duplicates, faces, embeddings")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    s.add_argument("--batch-size", type=int, default=1024, help="images per batch (the unit of resume)")
    _engine_args(s, "with ray, --workers is the actors per model pool")
    s.set_defaults(fn=cmd_scan)

    s = sub.add_parser("decide", help="apply a recipe: keep/reject per image, summary")
    s.add_argument("name")
    s.add_argument("--recipe", default=None, help="recipe YAML/JSON (default: data-derived)")
    s.add_argument("--out", default=None, help="decisions file (.csv or .parquet)")
    s.add_argument("--no-overrides", action="store_true", help="ignore manual overrides")
    s.add_argument("--class-cap", type=float, default=None, metavar="SHARE",
                   help="the automatic cuts remove at most this share (0-1) of any class per split (recipe class_cap)")
    s.set_defaults(fn=cmd_decide)

    s = sub.add_parser("split", help="train/val/test for a dataset without splits: stratified by label, grouped "
                       "by subject (CK+, JAFFE), deterministic for a seed; stored and used by decide and train")
    s.add_argument("name")
    s.add_argument("--by", choices=["subject", "identity", "none"], default="subject",
                   help="keep each subject on one side (read from the file names), each identity cluster (from "
                   "the face embeddings: scan --signals faces,embeddings first), or no grouping")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ratios", default="0.8,0.1,0.1", help="train,val,test shares (sum 1)")
    s.add_argument("--threshold", type=float, default=None, metavar="COSINE",
                   help="--by identity: two clusters are one person while their average cosine similarity is at "
                   "least this (default 0.363, SFace's same-person threshold)")
    s.add_argument("--show", action="store_true", help="show the stored assignment, change nothing")
    s.add_argument("--clear", action="store_true", help="remove the stored assignment")
    s.set_defaults(fn=cmd_split)

    s = sub.add_parser("recipe", help="write the data-derived default recipe")
    s.add_argument("name")
    s.add_argument("--out", default=None, help="YAML (or .json) path; default: print")
    s.add_argument("--recipe-name", default=None)
    s.set_defaults(fn=cmd_recipe)

    s = sub.add_parser("export", help="export the kept images (ImageFolder; optional fer2013.csv, CLAHE)")
    s.add_argument("name")
    s.add_argument("--recipe", default=None, help="recipe YAML/JSON (default: data-derived)")
    s.add_argument("--out", default=None, help="output folder (default: cache/exports/<export-name>)")
    s.add_argument("--export-name", default=None)
    s.add_argument("--clahe", action="store_true", help="apply CLAHE (contrast-limited histogram equalisation)")
    s.add_argument("--clahe-clip", type=float, default=2.0)
    s.add_argument("--clahe-tile", type=int, default=8)
    s.add_argument("--csv", action="store_true", help="also write fer2013.csv")
    s.add_argument("--zip", action="store_true", help="also write a zip beside the folder")
    s.add_argument("--no-overrides", action="store_true")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("link", help="link two datasets holding the same faces (e.g. fer2013 and ferplus): pairs "
                                    "found by content, verified on pixels; crowd votes flow through the link")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--max-mean", type=float, default=3.0,
                   help="a pair's mean per-pixel difference at most this many grey levels (default 3)")
    s.set_defaults(fn=cmd_link)

    s = sub.add_parser("map", help="compute the 2-D embedding map (cached)")
    s.add_argument("name")
    s.add_argument("--method", choices=["umap", "pca"], default="umap")
    s.set_defaults(fn=cmd_map)

    s = sub.add_parser("labels", help="find label errors: K-fold out-of-fold probabilities ranked by cleanlab")
    s.add_argument("name")
    s.add_argument("--folds", type=int, default=4)
    s.add_argument("--epochs", type=int, default=7, help="CNN epochs per fold")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sources", default="cnn,embeddings", help="cnn and/or embeddings (used when computed)")
    _engine_args(s, "with ray, the folds train as parallel Ray tasks")
    s.set_defaults(fn=cmd_labels)

    s = sub.add_parser("train", help="train and evaluate on the untouched test split")
    s.add_argument("name")
    s.add_argument("--recipe", default=None, help="train on the images this recipe keeps (with overrides)")
    s.add_argument("--export", default=None, help="train on an export folder")
    s.add_argument("--preset", default="standard", choices=["smoke", "standard", "full"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    s.add_argument("--lr-decay", default=None, choices=["cosine"],
                   help="the learning rate falls along a cosine to 0 over the run (default: the preset's own)")
    s.add_argument("--max-train", type=int, default=None, help="stratified subset of the training images")
    s.add_argument("--balance", default=None, choices=["none", "class_weight", "sampler"])
    s.add_argument("--augment", default=None, choices=["none", "light", "standard"])
    s.add_argument("--run-id", default=None, help=argparse.SUPPRESS)
    s.add_argument("--resume", action="store_true",
                   help="with --run-id of an unfinished (killed, failed, cancelled) run: continue it from its last "
                   "finished epoch (same data, preset and seed; otherwise it starts again, and says so)")
    s.add_argument("--no-overrides", action="store_true")
    s.add_argument("--eval-on", action="append", default=None, metavar="DATASET[:SPLIT]",
                   help="also evaluate on another imported dataset's test split (repeatable), e.g. ferplus:test")
    s.add_argument("--prior", choices=["kept", "source"], default="kept",
                   help="class shares the model learns: as the kept images have them (default), or the dataset's "
                   "whole training split's (loss weights undo how much of each class the recipe removed)")
    s.add_argument("--soft", action="store_true",
                   help="train on the crowd's vote distribution (soft labels; needs the votes signals: FER+ or a link)")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="evaluate a finished run on any imported dataset's test split (no retraining)")
    s.add_argument("run_id")
    s.add_argument("--on", action="append", required=True, metavar="DATASET[:SPLIT]", help="repeatable")
    s.add_argument("--dataset", default=None, help="the run's dataset (default: found from the run id)")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("ab", help="raw vs curated (and relabel) with the same budget and seeds, paired intervals")
    s.add_argument("name")
    s.add_argument("--recipe", default=None, help="recipe YAML (required unless --resume)")
    s.add_argument("--preset", default=None, choices=["smoke", "standard", "full"], help="default standard")
    s.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    s.add_argument("--seed0", type=int, default=0, help="first seed")
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--max-train", type=int, default=None)
    s.add_argument("--lr-decay", default=None, choices=["cosine"],
                   help="the learning rate falls along a cosine to 0 over each run (default: the preset's own)")
    s.add_argument("--no-relabel-arm", action="store_true")
    s.add_argument("--budget", default=None, choices=["passes", "steps"],
                   help="what every arm gets the same of: passes (the preset's epochs over its own images; an arm "
                        "that keeps fewer images trains fewer steps) or steps (as many gradient steps as the raw "
                        "arm: curation judged at equal compute). Default steps (a resumed A/B: its own)")
    s.add_argument("--arms", default=None, metavar="A,B,...",
                   help="arms to train: raw, curated, control (random removal of as many images per class), relabel "
                        "(model suggestion), crowd (crowd-majority relabel; needs votes), soft (crowd vote "
                        "distributions as targets), prior (the recipe with the source's class shares restored by "
                        "loss weights). Default raw,curated[,relabel]")
    s.add_argument("--eval-on", action="append", default=None, metavar="DATASET[:SPLIT]",
                   help="also evaluate every run on this yardstick (repeatable), e.g. ferplus:test")
    s.add_argument("--baseline", default=None, metavar="AB_ID",
                   help="reuse the finished raw runs of an earlier A/B instead of training raw again (its preset "
                        "and budget are used unless given): compare a second recipe against the same raw runs")
    s.add_argument("--ab-id", default=None, help=argparse.SUPPRESS)
    s.add_argument("--resume", default=None, metavar="AB_ID",
                   help="finish an interrupted A/B (keeps its finished runs; --seeds N adds seeds)")
    s.set_defaults(fn=cmd_ab)

    s = sub.add_parser("collection", help="merged training sets: several imported datasets, each with its own recipe, "
                       "on one taxonomy, built into a dataset that scan, decide, export, train and ab accept")
    cs = s.add_subparsers(dest="action", required=True)
    c = cs.add_parser("create", help="write a collection's definition (cache/collections/NAME.yaml) and build it")
    c.add_argument("name")
    c.add_argument("--members", required=True, help="imported datasets, comma-separated, in order of preference")
    c.add_argument("--recipe", action="append", default=None, metavar="MEMBER=RECIPE",
                   help="a member's recipe: a file (R.yaml), a saved recipe's name, default (data-derived) or raw "
                        "(every image); repeatable; default: each member's data-derived default")
    c.add_argument("--contempt", default="keep", help="keep (its own class), drop, or a label to map it to")
    c.add_argument("--size", type=int, default=48, help="images brought to SIZE×SIZE gray (default 48)")
    c.add_argument("--no-build", action="store_true", help="write the definition only")
    c.set_defaults(fn=cmd_collection)
    c = cs.add_parser("build", help="(re)build a collection into the dataset of its name")
    c.add_argument("name")
    c.set_defaults(fn=cmd_collection)
    c = cs.add_parser("list", help="collections, their members and whether they are up to date")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_collection)
    c = cs.add_parser("show", help="members, recipe per member, counts per source × split × label, stale or not")
    c.add_argument("name")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_collection)

    s = sub.add_parser("runs", help="list training runs")
    s.add_argument("name")
    s.set_defaults(fn=cmd_runs)
    return p


def cancel_on_sigterm(cancel) -> object:
    """SIGTERM (a job's cancel button) cancels the command at its next check; returns the previous handler.

    Forked pool workers (the scan's, image decoding's) inherit the handler. There SIGTERM must keep its meaning:
    ``Pool.terminate()`` sends it and then waits for the worker to end — a worker that only set a flag went back to
    waiting for work and the command hung after its last batch (seen on ExpW's face scan). So in any process other
    than the one that installed it, the handler restores the default and ends the process by the same signal."""
    owner = os.getpid()

    def _term(signum, frame):
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        cancel.cancel()

    return signal.signal(signal.SIGTERM, _term)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Ctx(args)
    # restored on return: main() called in-process (a notebook, a test) must not leave its SIGTERM handler behind
    previous = cancel_on_sigterm(ctx.cancel)
    try:
        return _run(ctx, args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(ctx: Ctx, args) -> int:
    try:
        with _exclusive(ctx):
            rc = args.fn(ctx)
        if ctx.file_progress:
            ctx.file_progress.finish("done" if rc == 0 else "failed", info=ctx.result)
        return rc
    except (Cancelled, KeyboardInterrupt):
        ctx.bar.close()
        print("\nCancelled. Nothing partial was registered.", file=sys.stderr)
        if ctx.file_progress:
            ctx.file_progress.finish("cancelled", error={"code": "cancelled", "message": "Cancelled.", "hint": ""})
        return 130
    except FerError as exc:
        ctx.bar.close()
        print(f"\nError: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"What to do: {exc.hint}", file=sys.stderr)
        if ctx.file_progress:
            ctx.file_progress.finish("failed", error=exc.to_dict())
        return 1
    except Exception as exc:  # noqa: BLE001
        ctx.bar.close()
        import traceback

        traceback.print_exc()
        if ctx.file_progress:
            ctx.file_progress.finish("failed", error={"code": "bug", "message": f"{type(exc).__name__}: {exc}",
                                                      "hint": "Unexpected error; the job log has the traceback."})
        return 1
