"""The state store's LZ4 codec without pyarrow (issue 15 goal 3).

Format-3 blobs were first written with pyarrow's LZ4 codec; the store now compresses with
the ``lz4`` package. What a user relies on: a store written before the swap still opens
with every value as it was (a fixture blob written by the earlier code, and blobs
compressed by pyarrow in the test where it is installed), blobs written now read back
through pyarrow's codec too (the format did not change), and a damaged column is an
error that names the blob, not a wrong value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contactsync.state.columnar import MAGIC, Reader, decode, encode, lz4_compress, lz4_decompress

#: Written by main ac65e3d's ``columnar.encode`` (pyarrow's ``Codec("lz4")``) from
#: :func:`_fixture_frame`'s frame.
PYARROW_BLOB = Path(__file__).parent.parent / "data" / "state_blob_v3_pyarrow_lz4.bin"


def _fixture_frame() -> pd.DataFrame:
    """The frame the fixture blob holds: a column of each kind (text, dict, sparse,
    json, time)."""
    i = np.arange(3000)
    frame = pd.DataFrame({
        "crm_id": [f"C{k:06d}" for k in i],
        "company": [f"Company {k % 7}" for k in i],
        "middle_name": [("Mé" if k % 5 == 0 else None) for k in i],
        "notes": [("line\x1fone" if k == 7 else f"n{k}\r\n☃") for k in i],
        "job_title": [(None if k % 3 == 0 else f"Title {k}") for k in i],
    }, dtype=object)
    frame["modified"] = pd.to_datetime(pd.Series(
        [1_700_000_000 + k if k % 4 else None for k in i], dtype="float64"), unit="s", utc=True)
    return frame


def _assert_same(back: pd.DataFrame, frame: pd.DataFrame) -> None:
    assert list(back.columns) == list(frame.columns)
    for name in frame.columns:
        if name == "modified":
            assert back[name].isna().tolist() == frame[name].isna().tolist()
            assert (back[name].dropna() == frame[name].dropna()).all()
        else:
            assert back[name].tolist() == frame[name].tolist(), name


def _header(blob: bytes) -> tuple[dict, int]:
    at = len(MAGIC)
    size = int.from_bytes(blob[at : at + 8], "big")
    return json.loads(blob[at + 8 : at + 8 + size]), at + 8 + size


def _recompressed(blob: bytes, compress) -> bytes:  # type: ignore[no-untyped-def]
    """The same blob with each column's body compressed by ``compress`` instead."""
    header, at = _header(blob)
    bodies = []
    for col in header["columns"]:
        body = lz4_decompress(blob[at : at + col["bytes"]], col["raw"])
        at += col["bytes"]
        bodies.append(compress(body))
        col["bytes"] = len(bodies[-1])
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(8, "big") + head + b"".join(bodies)


def test_a_blob_written_with_pyarrows_codec_reads_back_every_value() -> None:
    blob = PYARROW_BLOB.read_bytes()
    header, _ = _header(blob)
    assert header["version"] == 3
    assert {c["kind"] for c in header["columns"]} == {"text", "dict", "sparse", "json", "time"}
    frame = _fixture_frame()
    _assert_same(decode(blob), frame)
    reader = Reader(blob)  # and one column at a time, as the links' move check reads
    assert reader.text("company").tolist() == frame["company"].tolist()


def test_blobs_compressed_by_pyarrow_now_and_by_lz4_read_through_either_codec() -> None:
    pa = pytest.importorskip("pyarrow")
    codec = pa.Codec("lz4")
    frame = _fixture_frame()
    ours = encode(frame, times=("modified",))
    theirs = _recompressed(ours, lambda body: codec.compress(body, asbytes=True))
    assert theirs != ours  # pyarrow's frames carry no content size: other bytes, same values
    _assert_same(decode(theirs), frame)
    header, at = _header(ours)  # what is written now still reads through pyarrow's codec
    for col in header["columns"]:
        stored = ours[at : at + col["bytes"]]
        at += col["bytes"]
        assert codec.decompress(stored, decompressed_size=col["raw"], asbytes=True) == \
            lz4_decompress(stored, col["raw"])


def test_a_damaged_column_is_an_error_not_a_wrong_value() -> None:
    body = "x\x1f".join(str(k) for k in range(1000)).encode()
    packed = lz4_compress(body)
    assert lz4_decompress(packed, len(body)) == body
    with pytest.raises(ValueError, match="damaged"):
        lz4_decompress(packed, len(body) + 1)
    with pytest.raises(RuntimeError):  # lz4's own error for a truncated frame
        lz4_decompress(packed[: len(packed) // 2], len(body))
