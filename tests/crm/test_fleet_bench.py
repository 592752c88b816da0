"""The fleet bench's data set (bench/fleet.py, issue 15 item 1) is what its numbers claim:
teams of 10 whose groups overlap by the shared territory, no group shared across teams,
and every group inside the CRM's contacts."""

from __future__ import annotations

from bench.fleet import TEAM, members, team_of


def test_teammates_share_three_quarters_of_their_groups_and_other_teams_nothing() -> None:
    group, p = 2000, {"users": 500, "contacts": 1_000_000, "group": 2000}
    groups = [set(members(u, group)) for u in range(2 * TEAM)]
    assert all(len(g) == group for g in groups)
    assert len(groups[0] & groups[1]) == group * 3 // 4  # teammates: the shared territory
    assert not groups[0] & groups[TEAM]  # another team: nothing in common
    assert all(team_of(i, p) == u // TEAM for u, g in enumerate(groups) for i in g)
    last = max(members(p["users"] - 1, group))
    assert last < p["contacts"]  # 500 users' groups fit in the 1M CRM; the rest is nobody's
    assert team_of(p["contacts"] - 1, p) == p["users"] // TEAM  # the owner no fleet user sees
