"""Safe zip extraction: no path traversal, no absolute paths, no symlinks, no zip bombs.

Every member is checked before anything is written; then members are streamed out with the byte
counts enforced while writing (declared sizes in a zip header can lie).
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from fer_core.config import DEFAULT_LIMITS, ImportLimits
from fer_core.errors import DiskFull, InvalidInput, UnsafeArchive
from fer_core.progress import CancelToken, ProgressFn, check_cancel, emit

_CHUNK = 1 << 20
_SMALL = 1 << 20  # below this, compression ratios say little


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The safe relative path of a member, or None for entries to skip (dirs, __MACOSX)."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"The archive contains an absolute path: '{info.filename}'.",
                            "Refused for safety; re-create the archive with relative paths.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchive(f"The archive contains a path that escapes its folder: '{info.filename}'.",
                            "Refused for safety (path traversal); check where the archive came from.")
    mode = (info.external_attr >> 16) & 0xFFFF
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"The archive contains a symbolic link: '{info.filename}'.",
                            "Refused for safety; re-create the archive without links.")
    if info.is_dir() or not parts or parts[0] == "__MACOSX":
        return None
    return PurePosixPath(*parts)


def _size(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def _bomb(what: str) -> UnsafeArchive:
    return UnsafeArchive(what, "Refused as a possible zip bomb; raise the limit if you trust the archive.")


def expand_budget(archive_bytes: int, limits: ImportLimits = DEFAULT_LIMITS) -> int:
    """The most an archive of ``archive_bytes`` may expand to: the size limit and ``max_total_ratio`` × its size."""
    return min(limits.max_uncompressed_bytes, max(int(limits.max_total_ratio * archive_bytes), _SMALL))


def _archive_bytes(zf: zipfile.ZipFile) -> int:
    pos = zf.fp.tell()
    try:
        return zf.fp.seek(0, os.SEEK_END)
    finally:
        zf.fp.seek(pos)


def check_zip(zf: zipfile.ZipFile, limits: ImportLimits = DEFAULT_LIMITS) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Validate every member of ``zf``; return the (info, relative path) pairs to extract.

    Zip bombs: the compression ratio is checked per member and on the running total (many members
    just under the per-member threshold add up), and the total is capped relative to the archive's
    real size on disk (which, unlike the headers, cannot lie).
    """
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchive(f"The archive has {len(infos):,} members (limit {limits.max_members:,}).",
                            "Refused as a possible zip bomb; raise the member limit if you trust it.")
    total = packed = 0
    out = []
    seen = set()
    for info in infos:
        rel = _member_path(info)
        if rel is None:
            continue
        total += info.file_size
        packed += info.compress_size
        if info.file_size > _SMALL and info.file_size / max(info.compress_size, 1) > limits.max_ratio:
            raise _bomb(f"'{info.filename}' expands {info.file_size / max(info.compress_size, 1):,.0f}× "
                        f"(limit {limits.max_ratio:,.0f}×).")
        if total > _SMALL and total / max(packed, 1) > limits.max_ratio:
            raise _bomb(f"The archive's first {len(out) + 1:,} files expand {total / max(packed, 1):,.0f}× together "
                        f"({_size(packed)} → {_size(total)}; limit {limits.max_ratio:,.0f}×).")
        key = str(rel).lower()
        if key in seen:
            raise UnsafeArchive(f"The archive lists '{rel}' twice.", "Refused: ambiguous content.")
        seen.add(key)
        out.append((info, rel))
    if total > limits.max_uncompressed_bytes:
        raise _bomb(f"The archive expands to {total / 2**30:,.1f} GiB "
                    f"(limit {limits.max_uncompressed_bytes / 2**30:,.1f} GiB).")
    size = _archive_bytes(zf)
    if total > expand_budget(size, limits):
        raise _bomb(f"The archive ({_size(size)}) expands to {_size(total)}, {total / max(size, 1):,.0f}× its size "
                    f"(limit {limits.max_total_ratio:,.0f}×).")
    return out


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"'{path.name}' is not a readable zip archive ({exc}).",
                           "If it was downloaded, download it again; otherwise check the file.") from exc


def safe_extract(zip_path: Path, target: Path, limits: ImportLimits = DEFAULT_LIMITS,
                 progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                 on_file=None) -> int:
    """Extract ``zip_path`` into ``target`` (which must exist and be empty-ish). Returns files written.

    ``on_file(rel_path, data)`` is called with the bytes of each member up to 64 MiB, so a caller can
    hash and validate images without reading them back from disk.
    """
    target = Path(target).resolve()
    with open_zip(zip_path) as zf:
        members = check_zip(zf, limits)
        total = sum(i.file_size for i, _ in members)
        budget = expand_budget(_archive_bytes(zf), limits)  # enforced on the bytes written, not the headers
        done = 0
        made: set[str] = set()
        prefix = str(target) + os.sep
        emit(progress, "extract", 0, total, "B")
        for n, (info, rel) in enumerate(members):
            if n % 500 == 0:
                check_cancel(cancel)
            dest = os.path.normpath(os.path.join(target, *rel.parts))
            if not dest.startswith(prefix):  # defence in depth; _member_path already refused
                raise UnsafeArchive(f"'{info.filename}' would be written outside the target.", "Refused.")
            parent = os.path.dirname(dest)
            if parent not in made:
                if os.path.islink(parent):
                    raise UnsafeArchive(f"'{info.filename}' would be written through a link.", "Refused.")
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            written = 0
            keep = on_file is not None and info.file_size <= (64 << 20)
            parts = []
            try:
                with zf.open(info) as src, open(dest, "xb") as dst:
                    while True:
                        buf = src.read(_CHUNK)
                        if not buf:
                            break
                        written += len(buf)
                        if written > info.file_size:
                            raise UnsafeArchive(f"'{info.filename}' is larger than its header says.",
                                                "Refused as a possible zip bomb.")
                        if done + written > budget:
                            raise _bomb(f"The archive expands to more than {_size(budget)} while extracting, more "
                                        f"than its headers declare (limit {limits.max_total_ratio:,.0f}× its size).")
                        dst.write(buf)
                        if keep:
                            parts.append(buf)
                if keep:
                    on_file("/".join(rel.parts), b"".join(parts))
            except OSError as exc:
                if getattr(exc, "errno", None) == 28:
                    raise DiskFull("The disk is full while extracting the archive.",
                                   f"Free space under {target.parent} and import again.") from exc
                raise
            except zipfile.BadZipFile as exc:
                raise InvalidInput(f"'{zip_path.name}' is damaged ({exc}) at '{info.filename}'.",
                                   "Download or copy the archive again.") from exc
            done += written
            if n % 200 == 0:
                emit(progress, "extract", done, total, "B")
        emit(progress, "extract", total, total, "B")
        return len(members)
