"""Where runtime data lives and the limits that protect it.

The cache root is ``./cache`` next to the project (or ``$FER_CACHE_DIR``). Nothing here needs
configuration: the defaults are the embedded defaults the app starts with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The cache directory (created if missing)."""
    root = Path(override or os.environ.get("FER_CACHE_DIR") or PROJECT_ROOT / "cache")
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class ImportLimits:
    """Limits applied to everything imported. All configurable (CLI flags, function arguments)."""

    max_members: int = 2_000_000          # files in one archive
    max_uncompressed_bytes: int = 50 * 2**30  # total uncompressed size of an archive
    max_ratio: float = 200.0              # per-member compression ratio (zip-bomb guard)
    min_side: int = 8                     # images smaller than this are "absurd"
    max_side: int = 16_384
    max_pixels: int = 100_000_000


DEFAULT_LIMITS = ImportLimits()
