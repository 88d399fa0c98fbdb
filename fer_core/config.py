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
    max_ratio: float = 200.0              # compression ratio per member and running over all (zip-bomb guard)
    max_total_ratio: float = 50.0         # total expanded size ÷ archive file size (FER2013: 0.92; CSV: ~3)
    min_side: int = 8                     # images smaller than this are "absurd"
    max_side: int = 16_384
    max_pixels: int = 100_000_000


DEFAULT_LIMITS = ImportLimits()


# ---- server-path imports from the browser ------------------------------------------------------
# The CLI is the operator on their own machine and may import any path; the app's "path on the
# server" import reads only inside these folders, and only when the app listens on loopback (or the
# operator sets FER_ALLOW_PATH_IMPORT=1): a browser user must not be able to read the server's files.
IMPORT_ROOTS_ENV = "FER_IMPORT_ROOTS"
ALLOW_PATH_IMPORT_ENV = "FER_ALLOW_PATH_IMPORT"


def import_roots(cache: str | os.PathLike | None = None) -> list[Path]:
    """Folders the app may import server paths from: ``<cache>/import`` (created) and ``$FER_IMPORT_ROOTS``
    (``os.pathsep``-separated), each resolved."""
    default = cache_root(cache) / "import"
    default.mkdir(exist_ok=True)
    extra = [Path(p).expanduser() for p in os.environ.get(IMPORT_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for p in [default, *extra]:
        real = Path(os.path.realpath(p))
        if real not in out:
            out.append(real)
    return out


def is_loopback(address: str | None) -> bool:
    """True when a server bound to ``address`` is reachable from this machine only ("" = every interface)."""
    import ipaddress

    addr = (address or "").strip().strip("[]")
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def path_import_allowed(address: str | None) -> bool:
    """Whether the app offers import from a server path: on loopback, or when the operator opted in."""
    return is_loopback(address) or os.environ.get(ALLOW_PATH_IMPORT_ENV, "").strip() == "1"


# ---- where a scan's image work runs (issue 19) -------------------------------------------------
# "local" (the embedded default: a process pool on this machine) or "ray" (Ray Data on a cluster; see
# fer_core/ray_engine.py). RAY_ADDRESS is Ray's own variable: ray://HOST:10001, HOST:PORT or auto; unset
# with the ray engine = a local Ray started for the job.
ENGINE_ENV = "FER_ENGINE"
RAY_ADDRESS_ENV = "RAY_ADDRESS"


def engine() -> str:
    return os.environ.get(ENGINE_ENV, "").strip().lower() or "local"


def ray_address() -> str | None:
    return os.environ.get(RAY_ADDRESS_ENV, "").strip() or None
