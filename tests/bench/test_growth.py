"""The growth table (issue 15 goal 4) names how a cost grows, so a change in how a cycle
scales shows as a change of name, whatever its figures."""

from __future__ import annotations

import json

import pytest

from bench import growth

SIZES = [1_000, 10_000, 100_000]


def costs(a: float, b: float, power: float = 1.0) -> list[float]:
    return [a + b * n**power for n in SIZES]


@pytest.mark.parametrize(
    ("values", "fixed", "name"),
    [
        (costs(2.0, 0.0), None, "constant"),
        (costs(0.25, 1e-6), None, "constant"),  # 0.25 -> 0.35 s: the fixed part decides
        (costs(0.0, 1e-4), None, "linear in size"),
        (costs(0.2, 2e-5), None, "a + b·size"),  # 0.22, 0.4, 2.2 s: the settled quiet cycle's shape
        (costs(0.0, 1e-9, 2.0), None, "superlinear in size"),
        ([10.0, 1.0, 0.1], None, "falls with size"),
        # the 1 % cycle grows with N; the same cycle with 100 changes at every size does not
        (costs(0.1, 1e-4), costs(0.5, 0.0), "linear in changes"),
        # ... and where the fixed-changes cycle grows too, the cost is in the size
        (costs(0.1, 1e-4), costs(0.1, 1e-4), "linear in size"),
    ],
)
def test_growth_is_named_from_the_loglog_slope(values, fixed, name):
    assert growth.growth_row(SIZES, values, fixed=fixed)["growth"] == name


def test_fit_recovers_a_and_b_and_the_size_share():
    row = growth.growth_row(SIZES, costs(0.5, 3e-5))
    assert row["a"] == pytest.approx(0.5, rel=1e-6)
    assert row["b"] == pytest.approx(3e-5, rel=1e-6)
    assert row["size_share_at_largest"] == pytest.approx(3.0 / 3.5, abs=0.01)
    assert 0.2 < row["slope"] < 0.7


def test_zero_requests_at_every_size_is_constant_and_missing_sizes_are_skipped():
    assert growth.growth_row(SIZES, [0, 0, 0])["growth"] == "constant"
    row = growth.growth_row(SIZES, [1.0, None, 100.0])
    assert row["slope"] == pytest.approx(1.0)


def _cycle(wall: float, cpu: float, requests: int, rss: float) -> dict:
    return {"wall_s": wall, "cycle_cpu_s": cpu, "http_requests": requests, "peak_rss_mb": rss,
            "load_average": {"before": [1.0, 1.0, 1.0], "after": [1.5, 1.0, 1.0]}}


def test_table_has_a_row_per_cycle_and_cost_and_takes_the_fleets_user_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(growth, "RESULTS", tmp_path)
    monkeypatch.setattr(growth, "GROWTH_JSON", tmp_path / "growth.json")
    sizes = []
    for n in SIZES:
        sizes.append({"n": n, "date": "2026-12-01 18:00 UTC", "commit": "abc1234", "cycles": {
            "first_sync": _cycle(n / 1000, n / 2000, n // 60, 100 + n / 500),
            "quiet": _cycle(0.3, 0.2, 2, 120),
            "edits_1pct": _cycle(0.2 + n / 10_000, 0.1 + n / 20_000, 3 + n // 2000, 130),
            "edits_fixed": _cycle(0.4, 0.3, 5, 130),
        }})
    growth.write_results({"sizes": sizes, "fleet": [
        {"users": 10, "date": "2026-12-01 18:10 UTC", "source": "test", "process_wall_s": 14.0,
         "per_user_wall_s": 1.4, "emulator_requests": 20, "load_average_after": [2.0]}]})
    (tmp_path / "fleet.json").write_text(json.dumps({
        "machine": {"date": "2026-12-01 18:20 UTC"}, "params": {"users": 100},
        "prefect_on_sqlite": {"process_wall_s": 140.0, "per_user_wall_s": 1.4, "emulator_requests": 200,
                              "load_average_after": [6.2]}}))
    text = growth.table()
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in text.splitlines() if line.startswith("| ")}
    assert rows[("first_sync", "wall s")].rstrip(" |").endswith("linear in size")
    assert rows[("quiet", "Graph requests")].rstrip(" |").endswith("constant")
    assert rows[("edits_1pct", "CPU s")].rstrip(" |").endswith("linear in changes")
    assert "| 10 users | 100 users |" in text
    fleet_wall = next(line for line in text.splitlines() if line.startswith("| wall s | 14.0 | 140.0"))
    assert fleet_wall.rstrip(" |").endswith("linear in users")
    per_user = next(line for line in text.splitlines() if line.startswith("| wall s per user"))
    assert per_user.rstrip(" |").endswith("constant")


def test_one_size_names_no_growth():
    assert growth.growth_row([1_000], [2.0])["growth"] == "-"


def test_readme_tables_are_replaced_between_the_markers(tmp_path, monkeypatch):
    monkeypatch.setattr(growth, "RESULTS", tmp_path)
    monkeypatch.setattr(growth, "GROWTH_JSON", tmp_path / "growth.json")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\nbefore\n{growth.BEGIN}\nold table\n{growth.END}\nafter\n")
    monkeypatch.setattr(growth, "README", readme)
    growth.write_results({"sizes": [{"n": n, "date": "d", "cycles": {"quiet": _cycle(0.3, 0.2, 2, 120)}}
                                    for n in SIZES], "fleet": []})
    growth.write_readme()
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Benchmarks\n\nbefore\n") and text.endswith("after\n")
    assert "| quiet | Graph requests | 2 | 2 | 2 |" in text
