"""The default install has no pyarrow (pyproject.toml: it comes with the ``arrow`` extra
only), and must work as well without it as with it (issue 15 goal 3).

pandas imports pyarrow whenever it can (~60 MB in every process), so the sync's own code
never needs it outside the ADBC read on PostgreSQL. These tests run children in which
pyarrow and the ADBC driver cannot be imported (bench/no_pyarrow.py: a ``sys.meta_path``
finder refusing them, from a ``sitecustomize.py`` on the child's ``PYTHONPATH``), and hold
what a user relies on: the cycle's modules import, the state store's blobs round-trip and
blobs written by pyarrow's codec still read, and a real cycle ends in the same CRM and
Outlook state as with pyarrow, while pandas in that child has no pyarrow at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import no_pyarrow
from tests.e2e.conftest import LEE

ROOT = Path(__file__).resolve().parents[1]

#: Run in the child: imports what a cycle imports, then exercises what pyarrow used to do
#: (the state blob codec, the plan's id look-ups) and prints what it found.
_CHILD = """
import json, sys
import numpy as np
import pandas as pd
import contactsync.cycle.run, contactsync.cycle.steps, contactsync.crm.extract, contactsync.outlook.extract
from contactsync.cycle import memory
from contactsync.plan.frames import member, positions
from contactsync.state.columnar import decode, encode

frame = pd.DataFrame({"id": [f"C{i}" for i in range(3000)],
                      "city": [("Town %d" % (i % 4)) if i % 3 else None for i in range(3000)],
                      "note": ["a\\x1fb" if i == 5 else "é\\r\\n" for i in range(3000)]}, dtype=object)
frame["t"] = pd.to_datetime(pd.Series([1.7e9 + i if i % 5 else None for i in range(3000)]), unit="s", utc=True)
back = decode(encode(frame, times=("t",)))
old = decode(open(sys.argv[1], "rb").read())
ids = np.array(["C1", "C2", "C3"], dtype=object)
memory.release()
print(json.dumps({
    "round_trip": all(back[c].tolist() == frame[c].tolist() for c in ("id", "city", "note"))
                  and back["t"].isna().tolist() == frame["t"].isna().tolist()
                  and bool((back["t"].dropna() == frame["t"].dropna()).all()),
    "old_blob_rows": len(old), "old_blob_company": sorted(set(old["company"])),
    "positions": positions(ids, np.array(["C3", None, "C9", "C1"], dtype=object)).tolist(),
    "member": member(np.array(["C2", "x", None], dtype=object), ids).tolist(),
    "str_dtype": str(pd.Series(["a"]).dtype),
}))
"""


def _reports_say_no_pyarrow(report: Path, *, children: int) -> list[dict[str, Any]]:
    found = no_pyarrow.reports(report)
    assert len(found) == children, found
    for child in found:
        assert child["loaded"] == [], child  # not one pyarrow or ADBC module in the process
        assert child["pandas_imported"] and child["pandas_has_pyarrow"] is False, child
        assert "pyarrow" in child["refused"], child  # pandas did try: the refusal was real
    return found


def test_the_cycles_code_and_the_state_blobs_work_without_pyarrow(tmp_path: Path) -> None:
    blob = ROOT / "tests" / "data" / "state_blob_v3_pyarrow_lz4.bin"  # pyarrow's codec wrote it
    env = no_pyarrow.env(tmp_path / "refuse", report=tmp_path / "report")
    env["PYTHONPATH"] += os.pathsep + str(ROOT)
    run = subprocess.run([sys.executable, "-c", _CHILD, str(blob)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["round_trip"] is True
    assert got["old_blob_rows"] == 3000 and got["old_blob_company"] == [f"Company {k}" for k in range(7)]
    assert got["positions"] == [2, -1, -1, 0]
    assert got["member"] == [True, False, False]
    assert got["str_dtype"] == "str"  # pandas' str dtype, stored in Python without pyarrow
    _reports_say_no_pyarrow(tmp_path / "report", children=1)


@pytest.mark.slow
def test_a_real_cycle_without_pyarrow_ends_as_it_does_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first sync and then a cycle with every kind of write on both sides
    (tests/reliability/scenario.py) in children without pyarrow; the same second cycle
    with pyarrow from the same state; both sides' end states and outcomes equal."""
    from tests.reliability import scenario
    from tests.reliability.world import child_cycle, clone, world_picture

    refused = no_pyarrow.env(tmp_path / "refuse", base={}, report=tmp_path / "report")
    with monkeypatch.context() as m:  # the first sync and its world, without pyarrow
        m.setenv("PYTHONPATH", refused["PYTHONPATH"])
        m.setenv(no_pyarrow.REPORT_DIR, refused[no_pyarrow.REPORT_DIR])
        base = scenario.build(tmp_path / "base")
    pictures, outcomes = {}, {}
    for way in ("without", "with"):
        env, emu = clone(base, tmp_path / way, scenario.EXTRA)
        try:
            with monkeypatch.context() as m:
                if way == "without":
                    m.setenv("PYTHONPATH", refused["PYTHONPATH"])
                    m.setenv(no_pyarrow.REPORT_DIR, refused[no_pyarrow.REPORT_DIR])
                run = child_cycle(env.config, LEE)
            assert run.returncode == 0, run.stdout + run.stderr[-3000:]
            outcomes[way] = run.outcome()
            pictures[way] = world_picture(env)
        finally:
            emu.stop()
    found = _reports_say_no_pyarrow(tmp_path / "report", children=2)  # the first sync, the cycle
    assert all(r["argv"][0].endswith("cycle_child.py") for r in found)
    without, with_ = outcomes["without"], outcomes["with"]
    assert without["status"] == with_["status"] == "ok"
    assert sum(sum(side.values()) for side in without["counts"].values()) > 10  # writes on both sides
    assert without["counts"] == with_["counts"]
    assert without["conflicts"] == with_["conflicts"]
    assert pictures["without"] == pictures["with"]
