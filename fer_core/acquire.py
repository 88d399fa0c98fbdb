"""Get a dataset into the store: Kaggle download + import in one call (what the CLI and UI run)."""

from __future__ import annotations

from fer_core import datasets
from fer_core.progress import CancelToken, ProgressFn
from fer_core.sources import kaggle, registry


def resolve_target(what: str) -> tuple[str, registry.DatasetSpec | None]:
    """``what`` is a registry name (fer2013) or a Kaggle slug (owner/name). Returns (slug, spec)."""
    if "/" in what:
        return what, registry.by_slug(what)
    spec = registry.get_spec(what)
    if not spec.kaggle_slug:
        from fer_core.errors import InvalidInput
        raise InvalidInput(f"'{what}' has no Kaggle source.", "Import it from disk instead (folder, zip or csv).")
    return spec.kaggle_slug, spec


def download_and_import(what: str, name: str | None = None, creds: kaggle.KaggleCredentials | None = None,
                        progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                        cache=None) -> datasets.ImportResult:
    slug, spec = resolve_target(what)
    creds = kaggle.resolve_credentials(creds)
    name = name or (spec.name if spec and spec.name != "folders" else slug.split("/")[1].lower())
    dl = kaggle.download_dataset(slug, creds, progress=progress, cancel=cancel, cache=cache)
    return datasets.import_dataset(
        dl.path, name, spec=spec.name if spec else None, progress=progress, cancel=cancel, cache=cache,
        source_info={"kind": "kaggle", "slug": slug, "version": dl.version, "archive": str(dl.path),
                     "bytes": dl.bytes, "md5": dl.md5})
