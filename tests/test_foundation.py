"""The canonical model and configuration that every other part relies on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contactsync import model
from contactsync.config import load_settings
from contactsync.errors import ConfigError


def test_normalise_trims_blanks_to_missing_and_lowercases_emails_only() -> None:
    frame = pd.DataFrame(
        {f: [None, None] for f in model.FIELDS}
        | {"first_name": ["  Ann ", "   "], "email1": [" Ann@Example.COM ", ""], "street": ["1 Main\r\nRear", None]}
    )
    norm = model.normalise(frame)
    assert norm["first_name"].tolist() == ["Ann", None]
    assert norm["email1"].tolist() == ["ann@example.com", None]
    assert norm["street"].tolist() == ["1 Main\nRear", None]


def test_equal_normalised_treats_missing_as_equal() -> None:
    a = pd.Series(["x", None, "y"], dtype=object)
    b = pd.Series(["x", None, None], dtype=object)
    assert model.equal_normalised(a, b).tolist() == [True, True, False]


def test_conform_adds_missing_columns_with_dtypes() -> None:
    out = model.conform(pd.DataFrame({"crm_id": ["C1"], "crm_modified": ["2024-01-01T00:00:00Z"]}), model.CRM_COLUMNS)
    assert list(out.columns) == list(model.CRM_COLUMNS)
    assert str(out["crm_modified"].dtype).startswith("datetime64") and out["read_only"].dtype == bool
    assert out["first_name"].iloc[0] is None


def test_pad_user_pads_to_twelve() -> None:
    assert model.pad_user("ADMIN") == "ADMIN       "
    with pytest.raises(ValueError):
        model.pad_user("X" * 13)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "contact-sync.toml"
    p.write_text(text)
    return p


def test_config_env_overrides_file_and_secret_is_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path, '[outlook]\nclient_secret = "from-file"\n[[users]]\ncrm_user = "U1"\nmailbox = "a@b.c"\n')
    monkeypatch.setenv("CONTACT_SYNC_OUTLOOK__CLIENT_SECRET", "from-env")
    s = load_settings(cfg)
    assert s.outlook.client_secret.get_secret_value() == "from-env"
    assert "from-env" not in repr(s) and "from-env" not in str(s.model_dump())
    assert s.users[0].crm_user == "U1".ljust(12)
    assert s.crm_url() == f"sqlite:///{tmp_path.resolve() / 'crm.db'}"


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = _write(tmp_path, '[sync]\nconflict_policy = "newest"\n[sync.field_direction]\nfax = "two-way"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert err.value.exit_code == 2
    assert "sync.conflict_policy" in err.value.message and "fax" in err.value.message


def test_missing_config_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "nope.toml")
    assert "--config" in (err.value.hint or "")


def test_compact_emails_closes_gaps_in_order_and_keeps_full_rows() -> None:
    frame = pd.DataFrame(
        {"email1": ["a@x.io", None, "a@x.io"], "email2": [None, " ", "b@x.io"], "email3": ["c@x.io", "d@x.io", "c@x.io"]}
    )
    out = model.compact_emails(frame)
    assert out.to_dict("records") == [
        {"email1": "a@x.io", "email2": "c@x.io", "email3": None},
        {"email1": "d@x.io", "email2": None, "email3": None},
        {"email1": "a@x.io", "email2": "b@x.io", "email3": "c@x.io"},
    ]


def test_worst_exit_code_order_is_failed_then_guard_then_locked() -> None:
    from contactsync.cycle.outcome import CycleOutcome, worst_exit_code

    def o(status: str) -> CycleOutcome:
        return CycleOutcome(user="U", status=status, dry_run=False)

    assert worst_exit_code([o("ok"), o("locked"), o("guard-stopped")]) == 3
    assert worst_exit_code([o("locked"), o("failed"), o("guard-stopped")]) == 1
    assert worst_exit_code([o("ok"), o("locked")]) == 4
    assert worst_exit_code([o("ok"), o("dry-run")]) == 0
    line = o("ok").json_line()
    assert set(line) == {"user", "status", "dry_run", "counts", "conflicts", "quarantined", "run_id"}
    assert set(line["counts"]["crm"]) == {"create", "update", "unlink", "group_add", "group_remove"}


#: Where Arrow's Unicode rules and Python's differ: a dotted capital I (lower-cased to
#: "i" + U+0307 by Python, to "i" by Arrow) and U+001C..U+001F (whitespace to Python only).
DIFFERING_TEXT = ["İNCE@EXAMPLE.COM", "\x1cann@example.com\x1f", "Ö\x1e", "  \x1d "]


@pytest.mark.parametrize("dtype", [pd.StringDtype("pyarrow", na_value=float("nan")), object])
def test_match_keys_follow_pythons_text_rules_whatever_pandas_stores_strings_in(dtype: object) -> None:
    """R7: a key computed from a column pandas stores in Arrow (pyarrow installed: the
    default ``str`` dtype) equals the key of the same text held as Python objects, and the
    planning kernel's, so CRM and Outlook emails match on every path."""
    from contactsync.plan.frames import norm

    column = pd.Series(DIFFERING_TEXT, dtype=dtype)  # type: ignore[call-overload]
    want = [v.strip().lower() or None for v in DIFFERING_TEXT]
    assert model.email_key(column).tolist() == want
    assert norm(column.to_numpy(dtype=object), email=True).tolist() == want
    assert model.normalise_series(column).tolist() == [v.strip() or None for v in DIFFERING_TEXT]


def test_street_lines_are_trimmed_by_pythons_rules() -> None:
    """The CRM street's trailing blanks go as Python strips them (U+001C included), the
    same whether pandas stores the lines in Arrow or as objects."""
    from contactsync.crm.extract import street_from_lines

    arrow = pd.StringDtype("pyarrow", na_value=float("nan"))
    lines = pd.DataFrame({"a": pd.Series(["1 Main St\x1c", "x"], dtype=arrow),
                          "b": pd.Series([None, "\x1d"], dtype=arrow)})
    assert street_from_lines(lines).tolist() == ["1 Main St", "x"]


def test_inferred_text_is_stored_as_python_objects_even_with_pyarrow_installed() -> None:
    """Frames built from strings keep Python-stored text (contactsync.model's pin): Arrow
    storage converts every id look-up and cost the first sync 157 MB at 100,000."""
    assert pd.Series(["CSYNC0000001", None]).dtype == model.PY_TEXT
    assert pd.Index(["a", "b"]).dtype == model.PY_TEXT
