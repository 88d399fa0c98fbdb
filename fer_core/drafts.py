"""Auto-saved draft recipes: the unsaved state of a dataset's current recipe, kept on the server.

The app writes the draft at every change that leaves the current recipe different from the recipe it
started from (a saved recipe, or the data-derived default), and clears it when the recipe is saved,
loaded, reset or changed back; a new browser tab or a reload restores it. One draft per dataset, shared by
its sessions (the last change wins): ``cache/datasets/<name>/recipes/.draft.yaml``, written atomically.
Hidden files in ``recipes/`` (the draft, an export's temporary recipe) are never listed as saved recipes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from fer_core import decisions
from fer_core.errors import DiskFull, FerError, InvalidInput
from fer_core.progress import atomic_write_text
from fer_core.recipe import Recipe
from fer_core.store_paths import _NAME_RE

FORMAT = "fer-recipe-draft/1"
DRAFT_FILE = ".draft.yaml"


@dataclass
class Draft:
    recipe: Recipe
    base: str | None      # the saved recipe it started from; None: the data-derived default (or an upload)
    label: str            # the name the app showed for it
    updated: float        # when it was last written (epoch seconds)
    path: Path


def draft_path(name: str, cache=None) -> Path:
    return decisions.recipes_dir(name, cache) / DRAFT_FILE


def list_recipes(name: str, cache=None) -> list[str]:
    """Names of the saved recipes (``recipes/<name>.yaml``), without the draft or an export's temporary file."""
    return sorted(p.stem for p in decisions.recipes_dir(name, cache).glob("*.yaml")
                  if p.is_file() and _NAME_RE.fullmatch(p.stem))


def write(name: str, rec: Recipe, base: str | None, label: str, cache=None) -> Path:
    """Write the draft atomically (a reader never sees half of it); a failure says why, the old draft stays."""
    path = draft_path(name, cache)
    doc = {"format": FORMAT, "base": base, "label": label, "updated": time.time(), "recipe": rec.to_dict()}
    try:
        atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    except OSError as exc:
        cls = DiskFull if exc.errno == 28 else FerError
        raise cls(f"Your unsaved recipe changes could not be auto-saved to {path} ({exc.strerror}).",
                  "Free some disk space (or fix that folder's permissions): the next change saves it again. "
                  "Until then a reload loses the changes.") from None
    return path


def read(name: str, cache=None) -> Draft | None:
    """The dataset's draft, or None. A draft that cannot be read is moved aside (never deleted) and reported."""
    path = draft_path(name, cache)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = yaml.safe_load(text)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InvalidInput("it is not a draft recipe")
        rec = Recipe.from_dict(doc.get("recipe"), DRAFT_FILE)
        return Draft(rec, doc.get("base") or None, str(doc.get("label") or rec.name), float(doc["updated"]), path)
    except (yaml.YAMLError, InvalidInput, KeyError, TypeError, ValueError) as exc:
        aside = path.with_name(f".draft-unreadable-{time.strftime('%Y%m%d-%H%M%S')}.yaml")
        path.replace(aside)
        why = exc.message if isinstance(exc, InvalidInput) else type(exc).__name__
        raise InvalidInput(f"The auto-saved draft recipe of '{name}' could not be read ({why}); it was kept as "
                           f"{aside}.", "The recipe starts from its default; copy values from that file by hand "
                           "if you need them.") from None


def clear(name: str, cache=None) -> bool:
    """Remove the draft; True when there was one."""
    try:
        draft_path(name, cache).unlink()
        return True
    except FileNotFoundError:
        return False
