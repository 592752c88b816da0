"""The daily quality-report flow: the configured folder, and the summary in the artifact itself."""

from __future__ import annotations

from pathlib import Path

from contactsync.report.markdown import md

from .week import HOSTILE, Cycle, Week, write_config

LEE, SAM = "UDEMOA000001", "UDEMOA000002"


def test_markdown_summary_is_inert_text() -> None:
    assert md(HOSTILE) == "&lt;script&gt;alert\\(\"pwned\"\\)&lt;/script&gt; O'Brien \"Bob\" 🦊"
    assert md("a|b\n[x](http://e)") == "a\\|b \\[x\\]\\(http://e\\)"


def test_the_flow_writes_to_report_out_dir_and_the_artifact_holds_the_summary(
    prefect_api: None, tmp_path: Path
) -> None:
    import pandas as pd
    from prefect.client.orchestration import get_client

    from flows.quality_report import quality_report

    cfg = tmp_path / "etc" / "contact-sync.toml"
    store = write_config(cfg, tmp_path / "no-crm.db", 'out_dir = "../var/report"')
    week = Week(store, now=pd.Timestamp.now(tz="UTC").to_pydatetime())
    week.add(LEE, Cycle(pd.Timedelta(hours=2).to_pytimedelta()))
    week.add(SAM, Cycle(pd.Timedelta(hours=1).to_pytimedelta(), status="failed",
                        message="Outlook cannot be reached: 503"))
    week.write()
    store.close()

    paths = quality_report(config_path=str(cfg))
    html = Path(paths["html"])
    assert html == (tmp_path / "var" / "report" / "report.html").resolve()  # relative to the config
    assert html.is_file() and not (Path.cwd() / "report" / "report.html").exists()

    async def artifact() -> str:
        async with get_client() as client:
            found = await client.read_latest_artifacts()
            return next(a for a in found if a.key == "quality-report").data

    import asyncio

    text = asyncio.run(artifact())
    assert "**1 of 2 user(s) need attention**" in text  # the summary itself, not a link
    assert "| needs attention | UDEMOA000002 |" in text and "Outlook cannot be reached: 503" in text
    assert str(html) in text
