"""One dataset and everything done with it: the door a notebook, the CLI and the pages use.

    from fer_core.workspace import Workspace

    ws = Workspace("fer2013")            # an imported dataset (python -m fer_core download fer2013)
    ws.scan()                            # quality + duplicate signals: cached, resumable
    rec = ws.default_recipe()            # thresholds derived from this dataset (or ws.recipe("strict"))
    dec = ws.decide(rec)                 # keep / reject with reasons, the person's overrides applied
    print(ws.summary(dec))
    ws.export(rec, "fer2013-clean")      # an ImageFolder + manifest under cache/exports/
    ws.train(rec, preset="smoke")        # trained and evaluated on the untouched test split

Each method is a thin call into the engine module that does the work (store, recipe, decisions, review,
export, train); the facade only fixes the dataset and the cache, so the same calls work for any dataset and any
cache folder, and a newcomer finds every per-dataset operation here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fer_core import datasets, decisions, recipe as recipe_mod, review, store
from fer_core.store_paths import DatasetPaths, check_name, dataset_paths


class Workspace:
    def __init__(self, name: str, cache: str | Path | None = None):
        self.name = check_name(name)
        self.cache = cache

    def __repr__(self) -> str:
        return f"Workspace({self.name!r})"

    # -- what it is
    @property
    def dataset(self) -> datasets.Dataset:
        """The imported content (read afresh: a re-import is seen at once)."""
        return datasets.load(self.name, self.cache)

    @property
    def paths(self) -> DatasetPaths:
        return dataset_paths(self.name, self.cache)

    def status(self) -> dict[str, dict]:
        """Per signal family: computed and complete for the current import, rows, when."""
        return store.family_status(self.name, self.cache)

    # -- signals
    def scan(self, signals=store.DEFAULT_FAMILIES, **kw) -> store.ScanResult:
        """Compute what is missing of ``signals`` (and what they depend on); ``kw``: workers, batch_size,
        progress, cancel."""
        return store.scan(self.name, signals, cache=self.cache, **kw)

    def signals(self, require: tuple[str, ...] = ("quality",)) -> pd.DataFrame:
        """Catalog columns + every computed signal, one row per image, sorted by id."""
        return store.load_signals(self.name, self.cache, require=require)

    def inputs(self) -> decisions.Inputs:
        """Signals + duplicate candidate pairs: what decide works on (load once, decide many times)."""
        return decisions.load_inputs(self.name, self.cache)

    # -- splits (datasets without one)
    def split(self, by: str = "subject", seed: int = 0, ratios=(0.8, 0.1, 0.1), clear: bool = False,
              threshold: float | None = None) -> dict | None:
        """Assign train/val/test to a dataset without splits, stratified by label and grouped by ``by``
        (subject, identity or none), deterministic for ``seed``; stored, and used by decide and training from
        then on (``clear``: remove it; ``threshold``: the same-person cosine of ``by="identity"``). Returns
        :func:`fer_core.splits.describe` of what is stored."""
        from fer_core import splits

        if clear:
            splits.clear(self.name, cache=self.cache)
            return None
        return splits.make(self.name, by=by, seed=seed, ratios=ratios, cache=self.cache, threshold=threshold)

    def split_assignment(self) -> dict | None:
        """The stored split assignment (counts per split × label, subjects per split, seed), or None."""
        from fer_core import splits

        return splits.describe(self.name, self.cache)

    # -- recipes and decisions
    def default_recipe(self, name: str | None = None, inputs: decisions.Inputs | None = None) -> recipe_mod.Recipe:
        sig = (inputs or self.inputs()).signals
        return recipe_mod.default_recipe(sig, name=name or "default")

    def recipe(self, name_or_path: str | Path) -> recipe_mod.Recipe:
        """A recipe file by path (a ``Path``, or a string with a folder or a .yaml/.yml/.json suffix), else a
        saved recipe by name (``recipes/<name>.yaml``)."""
        p = Path(name_or_path)
        if not (isinstance(name_or_path, Path) or p.suffix in (".yaml", ".yml", ".json") or len(p.parts) > 1):
            p = decisions.recipes_dir(self.name, self.cache) / f"{check_name(str(name_or_path), 'recipe')}.yaml"
        return recipe_mod.Recipe.load(p)

    def recipes(self) -> list[str]:
        from fer_core import drafts

        return drafts.list_recipes(self.name, self.cache)

    def save_recipe(self, rec: recipe_mod.Recipe) -> Path:
        return rec.save(decisions.recipes_dir(self.name, self.cache) / f"{check_name(rec.name, 'recipe')}.yaml")

    @property
    def review(self) -> review.ReviewStore:
        """The person's overrides (keep / reject / relabel) and their event log."""
        return review.store_for(self.dataset)

    def decide(self, rec: recipe_mod.Recipe | None = None, overrides: bool = True,
               inputs: decisions.Inputs | None = None) -> pd.DataFrame:
        """Keep/reject per image with reasons (see :func:`fer_core.recipe.decide`); the data-derived default
        recipe when ``rec`` is None; the person's overrides unless ``overrides=False``."""
        inputs = inputs or self.inputs()
        rec = rec or recipe_mod.default_recipe(inputs.signals)
        return decisions.run(inputs, rec, self.review.overrides() if overrides else None)

    def summary(self, dec: pd.DataFrame, inputs: decisions.Inputs | None = None) -> str:
        return recipe_mod.format_summary(recipe_mod.summarize((inputs or self.inputs()).signals, dec))

    # -- outputs
    def export(self, rec: recipe_mod.Recipe, export_name: str, **kw):
        """Export the kept images (``kw``: clahe, csv, use_overrides, out_dir, progress, cancel)."""
        from fer_core import export

        return export.export(self.name, rec, export_name, cache=self.cache, **kw)

    def exports(self) -> list[dict]:
        from fer_core import export

        return [e for e in export.list_exports(self.cache) if e["manifest"]["source"]["dataset"] == self.name]

    def labels(self, **cfg):
        """Label-error signals by K-fold out-of-fold training (``cfg``: folds, epochs, seed, sources)."""
        from fer_core.train import labels

        return labels.compute(self.name, labels.LabelsConfig(**cfg), cache=self.cache)

    def train(self, rec: recipe_mod.Recipe | None = None, preset: str = "standard", seed: int = 0, **kw) -> dict:
        """Train on the raw data (``rec`` None) or on what ``rec`` keeps; returns the run's metrics."""
        from fer_core.train import runner

        recipe_file = None
        if rec is not None:
            recipe_file = self.paths.made(self.paths.recipes / "_runs") / f"{rec.fingerprint()}.yaml"
            rec.save(recipe_file)
        return runner.train(self.name, "recipe" if rec is not None else "raw", recipe_file, None, preset=preset,
                            seed=seed, cache=self.cache, **kw)

    def runs(self) -> list[dict]:
        from fer_core.train import runner

        return runner.list_runs(self.name, self.cache)
