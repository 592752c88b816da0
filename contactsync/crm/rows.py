"""The driver's rows of one statement as a frame of object columns, in few C passes.

Used by every read through SQLAlchemy (SQLite, SQL Server; ``crm/extract.py``): the
selected columns carry no result processors (datetimes are coerced to strings and parsed
by pandas), so the DBAPI cursor's tuples are already the values, and SQLAlchemy's Row
objects are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

try:  # the C loop pandas itself builds a frame of tuples with (public: none as fast)
    from pandas._libs.lib import to_object_array_tuples as _object_rows
except ImportError:  # pragma: no cover - a pandas without it: numpy's slower discovery
    def _object_rows(rows: list[tuple[Any, ...]]) -> np.ndarray:
        return np.array(rows, dtype=object)

FETCH_ROWS = 10_000  # rows per fetch of the driver's tuples


def read_frame(conn: sa.Connection, stmt: sa.Select) -> pd.DataFrame:
    """Run ``stmt`` into a frame from the driver's plain tuples (fast: no Row objects).

    The selected columns carry no result processors (datetimes are coerced to strings and
    parsed by pandas), so the driver's tuples are already the values. They are taken
    ``FETCH_ROWS`` at a time, each batch made into a rows x columns object array in one C
    pass (pandas' own, as ``DataFrame(rows)`` makes it) and its tuples freed at once: a
    100,000-row read holds 4 MB of tuples at a time, not 35 MB (issue 15 goal 3). The
    frame is a view of the one array the batches fill (its columns strided); pandas'
    ``DataFrame(rows)`` copies its transpose (0.17 s against 0.07 s at 100,000 rows).
    """
    result = conn.execute(stmt)
    columns = list(result.keys())
    batches: list[np.ndarray] = []
    if result.cursor is not None:
        while rows := result.cursor.fetchmany(FETCH_ROWS):
            batches.append(_object_rows(rows))
            del rows
    result.close()
    if not batches:
        return pd.DataFrame(columns=columns, dtype=object)
    if len(batches) == 1:
        matrix = batches.pop()
    else:
        matrix = np.empty((sum(len(b) for b in batches), len(columns)), dtype=object)
        at = 0
        while batches:  # each batch freed as soon as it is copied
            batch = batches.pop(0)
            matrix[at : at + len(batch)] = batch
            at += len(batch)
            del batch
    return pd.DataFrame(matrix, columns=columns, dtype=object, copy=False)  # object: None stays None
