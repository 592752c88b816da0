"""The report's charts as inline SVG shapes: readable offline and inside a mail attachment.

The numbers are bucketed here (pandas, one groupby for all users) and turned into plain
shapes (rectangles, polylines, labels with coordinates); the template only writes them
out, escaping every text. A period of 7 days of 15-minute cycles (672 per user) becomes
56 three-hour buckets, so the page stays small for hundreds of users.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from contactsync.report.summary import writes

MAX_BUCKETS = 56
SERIES = ("cycles", "failed", "guard_stopped", "outlook_writes", "crm_writes", "conflicts", "quarantined")
W, H, PAD = 560, 96, 22  # user chart: width, height, left/bottom room for labels


def bucket_hours(days: int) -> int:
    """Whole hours per bucket: at most MAX_BUCKETS buckets over the period."""
    return max(1, math.ceil(days * 24 / MAX_BUCKETS))


def cycle_numbers(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the numbers the charts draw (from each run's summary)."""
    summaries = runs["summary"].tolist()
    status = runs["status"]
    return pd.DataFrame({
        "user": runs["user"].to_numpy(),
        "started_at": runs["started_at"].to_numpy(),
        "cycles": (status != "running").astype(int).to_numpy(),
        "failed": (status == "failed").astype(int).to_numpy(),
        "guard_stopped": (status == "guard-stopped").astype(int).to_numpy(),
        "outlook_writes": [writes(s.get("counts"), "outlook") for s in summaries],
        "crm_writes": [writes(s.get("counts"), "crm") for s in summaries],
        "conflicts": [int(s.get("conflicts") or 0) for s in summaries],
        "quarantined": [int(s.get("quarantined") or 0) for s in summaries],
    })


def user_buckets(numbers: pd.DataFrame, since: pd.Timestamp, days: int) -> dict[str, list[dict[str, Any]]]:
    """Per user, the period's buckets (every bucket present, zero-filled)."""
    hours = bucket_hours(days)
    n = math.ceil(days * 24 / hours)
    if numbers.empty:
        return {}
    idx = ((pd.to_datetime(numbers["started_at"], utc=True) - since) // pd.Timedelta(hours=hours)).clip(0, n - 1)
    agg = {s: "sum" for s in SERIES}
    agg["quarantined"] = "max"  # records held back at the worst moment, not a running sum
    grouped = numbers.assign(bucket=idx.astype(int)).groupby(["user", "bucket"]).agg(agg)
    out: dict[str, list[dict[str, Any]]] = {}
    starts = [since + pd.Timedelta(hours=hours * i) for i in range(n)]
    iso = [t.isoformat() for t in starts]
    for user, frame in grouped.groupby(level="user"):
        rows = frame.droplevel("user").reindex(range(n), fill_value=0)[list(SERIES)].to_numpy().tolist()
        out[str(user)] = [{"start": iso[i], **dict(zip(SERIES, map(int, rows[i]), strict=True))}
                          for i in range(n)]
    return out


def fleet_days(numbers: pd.DataFrame, since: pd.Timestamp, days: int) -> list[dict[str, Any]]:
    """The whole fleet per day of the period: cycles, failures, guard stops, writes."""
    day0 = since.normalize()
    all_days = [day0 + pd.Timedelta(days=i) for i in range(days + 1)]
    if numbers.empty:
        frame = pd.DataFrame(0, index=range(len(all_days)), columns=list(SERIES))
    else:
        d = ((pd.to_datetime(numbers["started_at"], utc=True) - day0) // pd.Timedelta(days=1)).astype(int)
        frame = numbers.assign(day=d).groupby("day")[list(SERIES)].sum().reindex(
            range(len(all_days)), fill_value=0)
    return [{"day": all_days[i].strftime("%Y-%m-%d"), **{s: int(frame.at[i, s]) for s in SERIES}}
            for i in range(len(all_days))]


def _label(when: str) -> str:
    return pd.Timestamp(when).strftime("%a %d")


def user_chart(buckets: list[dict[str, Any]], hours: int) -> dict[str, Any]:
    """Writes per side as mirrored bars (Outlook up, CRM down), conflicts as dots,
    quarantined as a line, failed and guard-stopped buckets as red / amber marks."""
    n = max(len(buckets), 1)
    step = (W - PAD) / n
    mid = (H - PAD) / 2
    top = max([max(b["outlook_writes"], b["crm_writes"]) for b in buckets] + [1])
    qmax = max([b["quarantined"] for b in buckets] + [1])
    bars, dots, marks, labels, qline = [], [], [], [], []
    for i, b in enumerate(buckets):
        x = PAD + i * step
        when = pd.Timestamp(b["start"]).strftime("%Y-%m-%d %H:%M")
        for side, sign in (("outlook_writes", -1), ("crm_writes", 1)):
            if b[side]:
                h = max(1.0, (mid - 4) * b[side] / top)
                y = mid - h if sign < 0 else mid
                bars.append({"x": round(x + 1, 1), "y": round(y, 1), "w": round(max(step - 2, 1), 1),
                             "h": round(h, 1), "cls": side.split("_")[0],
                             "title": f"{when}: {b[side]} {side.split('_')[0].replace('outlook', 'Outlook').replace('crm', 'CRM')} write(s)"})
        if b["conflicts"]:
            dots.append({"cx": round(x + step / 2, 1), "cy": 5, "title": f"{when}: {b['conflicts']} conflict(s) (R9)"})
        for key, cls, what in (("failed", "failed", "failed"), ("guard_stopped", "guard", "guard-stopped (R16)")):
            if b[key]:
                marks.append({"x": round(x, 1), "y": H - PAD + 2, "w": round(max(step, 2), 1), "h": 6,
                              "cls": cls, "title": f"{when}: {b[key]} cycle(s) {what}"})
        qline.append(f"{x + step / 2:.1f},{mid - 2 - (mid - 6) * b['quarantined'] / qmax:.1f}")
        if i % max(1, round(24 / hours)) == 0:
            labels.append({"x": round(x, 1), "y": H - 4, "text": _label(b["start"])})
    return {"width": W, "height": H, "mid": mid, "left": PAD, "bars": bars, "dots": dots,
            "marks": marks, "labels": labels, "lines": [{"points": " ".join(qline), "cls": "quarantined"}]
            if any(b["quarantined"] for b in buckets) else [],
            "axis": [{"y": 12, "text": f"▲{top}"}, {"y": H - PAD - 4, "text": f"▼{top}"}]}


def fleet_chart(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Per day: cycles as grey bars with the failed / guard-stopped part in red / amber,
    and all writes (both sides) as a line on its own scale."""
    width, height = 720, 160
    n = max(len(days), 1)
    step = (width - 40) / n
    base = height - 24
    cmax = max([d["cycles"] for d in days] + [1])
    wmax = max([d["outlook_writes"] + d["crm_writes"] for d in days] + [1])
    bars, labels, points = [], [], []
    for i, d in enumerate(days):
        x = 40 + i * step
        scale = (base - 10) / cmax
        bars.append({"x": round(x + 4, 1), "y": round(base - d["cycles"] * scale, 1), "w": round(step - 8, 1),
                     "h": round(d["cycles"] * scale, 1), "cls": "cycles",
                     "title": f"{d['day']}: {d['cycles']} cycle(s), {d['failed']} failed, "
                              f"{d['guard_stopped']} guard-stopped"})
        y = base
        for key, cls in (("failed", "failed"), ("guard_stopped", "guard")):  # stacked at the foot
            if d[key]:
                h = max(2.0, d[key] * scale)
                y -= h
                bars.append({"x": round(x + 4, 1), "y": round(y, 1), "w": round(step - 8, 1), "h": round(h, 1),
                             "cls": cls, "title": f"{d['day']}: {d[key]} cycle(s) {cls.replace('guard', 'guard-stopped')}"})
        total = d["outlook_writes"] + d["crm_writes"]
        points.append(f"{x + step / 2:.1f},{base - (base - 10) * total / wmax:.1f}")
        labels.append({"x": round(x + step / 2, 1), "y": height - 6, "text": pd.Timestamp(d["day"]).strftime("%a %d")})
    return {"width": width, "height": height, "bars": bars, "labels": labels, "base": base,
            "lines": [{"points": " ".join(points), "cls": "writes"}],
            "axis": [{"y": 14, "text": f"{cmax} cycles"}], "writes_max": wmax}
