"""Signal families: one module per family, same shape.

Each family module defines ``FAMILY`` (name), ``VERSION`` (bump when its code changes: only that family
is recomputed), ``COLUMNS`` (metadata for every column it produces) and
``compute(batch: ImageBatch) -> dict[str, np.ndarray]``. Families that need every image at once
(duplicate pairs) also define ``finalize(table, catalog) -> dict[str, pd.DataFrame]``.
"""

from __future__ import annotations

from fer_core.signals.base import COLUMN_META, SignalColumn, column_meta, families, get_family

__all__ = ["SignalColumn", "COLUMN_META", "column_meta", "families", "get_family"]
