"""Run the Great Expectations suites on a cycle's frames; build each user's Data Docs.

``contactsync.quality`` decides quarantine (fast, pure pandas); this runner gives the same
verdict through GX so the report can carry GX's Data Docs beside it (DESIGN.md step 3/5).

What a cycle pays, and why it is little (issue 16 item 5, bench/gx_bench.py):
- GX is imported once per process, on first use, with one ephemeral context: the pandas
  data source, one dataframe asset, batch and validation definition per suite (the suites
  built from the R19 check records, ``expectations.build_suites``);
- a cycle's results are summarised (``BASIC``: counts and at most 20 example values per
  expectation), not complete lists of every failing row, and a cycle evaluates only the
  checks that can fail on its frames (a check of a column without any value passes);
- Data Docs are built once per cycle, not after every suite, and incrementally: only the
  new validation pages are rendered, then the index.

Each user's Data Docs hold that user's results only (R1): the context's result store is
empty between batches; a docs folder's own recent results (kept per folder, in memory)
are put back only while that folder's index is built, then the store is emptied again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contactsync import quality
from contactsync.model import EMAIL_FIELDS, FIELDS, NAME_FIELDS
from contactsync.quality.checks import SUITE_SOURCES, SUITES, Check
from expectations.build_suites import (
    HAS_NAME_OR_EMAIL,
    SUITE_NAMES,
    build,
    expectation,
    suite_columns,
)

FAILURE_COLUMNS: tuple[str, ...] = ("record_id", "expectation", "column", "reason")
_DATASOURCE = "contact_sync_frames"


@dataclass(frozen=True)
class ValidationOutcome:
    """What a validation found: overall verdict, GX statistics, one row per failing value."""

    success: bool
    statistics: dict[str, Any]
    failures: pd.DataFrame  # FAILURE_COLUMNS (in a summary: at most 20 per expectation)
    #: failing values in all (complete, also in a summary), + 1 per expectation that
    #: failed as a whole
    failure_count: int = 0
    data_docs_index: Path | None = None
    #: GX's ExpectationSuiteValidationResult (``.to_json_dict()`` for the full JSON)
    gx_result: Any = field(default=None, repr=False)

    def failed_ids(self) -> set[str]:
        """Record ids with at least one failure (None ids, e.g. a missing key, excluded)."""
        return {str(v) for v in self.failures["record_id"].dropna().unique()}


class _Gx:
    """The process-wide GX state (context, batch definitions, suites, docs sites)."""

    def __init__(self) -> None:
        # no usage analytics from a sync worker, unless the operator asked for them
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX narrates its set-up at INFO; a sync cycle's log is for the sync.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        self.gx = gx
        _share_compiled_templates()
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.source = self.context.data_sources.add_pandas(name=_DATASOURCE)
        self.definitions: dict[str, Any] = {}
        self.batches: dict[str, Any] = {}
        self.sites: dict[Path, str] = {}
        #: per docs folder: its recent results (key -> result), oldest first
        self.kept: dict[Path, OrderedDict[Any, Any]] = {}

    def definition(self, suite_name: str, checks: tuple[Check, ...] | None = None) -> Any:
        """The validation definition of suite ``suite_name`` (``checks``: only these of its
        checks, as a suite ``<name>.<digest>`` of its own; made once per process)."""
        name = suite_name
        if checks is not None:
            name += "." + hashlib.sha1(repr(checks).encode()).hexdigest()[:8]
        if name not in self.definitions:
            if suite_name not in self.batches:
                asset = self.source.add_dataframe_asset(name=suite_name)
                self.batches[suite_name] = asset.add_batch_definition_whole_dataframe(suite_name)
            suite = load_suite(suite_name) if checks is None else self.gx.ExpectationSuite(
                name=name, expectations=[expectation(c, SUITE_SOURCES[suite_name]) for c in checks],
                meta={"rule": "R19", "checks_of": suite_name},
            )
            self.definitions[name] = self.context.validation_definitions.add(
                self.gx.ValidationDefinition(
                    data=self.batches[suite_name], suite=self.context.suites.add(suite), name=name,
                )
            )
        return self.definitions[name]

    def site(self, directory: Path) -> str:
        directory = directory.resolve()
        if directory not in self.sites:
            name = "docs_" + hashlib.sha1(str(directory).encode()).hexdigest()[:10]
            self.context.add_data_docs_site(
                name,
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(directory),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
            self.sites[directory] = name
        return self.sites[directory]


def _share_compiled_templates() -> None:
    """Compile GX's Data Docs templates once per process, not once per page.

    Each of GX's Jinja views makes its own ``jinja2.Environment``, so every docs build
    compiled the same ~30 templates again (~0.3 s a cycle). A process-wide Jinja
    bytecode cache (a documented Environment hook) keeps the compiled code; the rendered
    pages are the same."""
    from jinja2 import BytecodeCache
    from jinja2.bccache import Bucket

    try:
        from great_expectations.render.view.view import DefaultJinjaView
    except ImportError:  # pragma: no cover - GX moved its views: pages are only slower
        return
    if getattr(DefaultJinjaView, "_contactsync_shared", False):
        return

    class _Memory(BytecodeCache):
        def __init__(self) -> None:
            self.codes: dict[str, bytes] = {}

        def load_bytecode(self, bucket: Bucket) -> None:
            if bucket.key in self.codes:
                bucket.bytecode_from_string(self.codes[bucket.key])

        def dump_bytecode(self, bucket: Bucket) -> None:
            self.codes[bucket.key] = bucket.bytecode_to_string()

    cache, init = _Memory(), DefaultJinjaView.__init__

    def shared_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.env.bytecode_cache = cache

    DefaultJinjaView.__init__ = shared_init  # type: ignore[method-assign]
    DefaultJinjaView._contactsync_shared = True  # type: ignore[attr-defined]


_state: _Gx | None = None
_lock = threading.RLock()


def _gx() -> _Gx:
    global _state
    with _lock:
        if _state is None:
            _state = _Gx()
        return _state


def load_suite(name: str) -> Any:
    """Suite ``name`` as a GX ExpectationSuite, built from the R19 check records
    (expectations.build_suites; imports GX: call lazily)."""
    return build()[name]


def prepare(frame: pd.DataFrame, suite: str) -> pd.DataFrame:
    """The frame as the suites expect it: blanks as missing, the derived R19 column.

    Blank strings are missing values (model.normalise), so GX should not test them as
    emails or dates. In the plan, values an action does not write are blanked, and only a
    create needs a name.
    """
    out = frame.copy()
    for column in suite_columns(suite):  # a projection is validated as if the rest were empty
        if column not in out.columns and column != HAS_NAME_OR_EMAIL:
            out[column] = pd.Series([None] * len(out), index=out.index, dtype=object)
    fields = [f for f in FIELDS if f in out.columns]
    if suite == "plan" and "fields" in out.columns:
        written = quality.written_fields(out["fields"])
        for f in fields:
            out[f] = out[f].where(written[f], None)
    for f in fields:
        s = out[f].astype(object)
        set_ = s.notna().to_numpy()
        if set_.any():
            vals = s.to_numpy(dtype=object)
            blank = np.zeros(len(s), dtype=bool)
            idx = np.flatnonzero(set_)
            blank[idx] = [not str(v).strip() for v in vals[idx]]
            s = s.where(~(blank | ~set_), None)
        out[f] = s
    has = np.zeros(len(out), dtype=bool)
    for f in NAME_FIELDS + EMAIL_FIELDS:
        if f in out.columns:
            has |= out[f].notna().to_numpy()
    if suite == "plan" and "op" in out.columns:
        has |= (out["op"] != "create").to_numpy()
    out[HAS_NAME_OR_EMAIL] = has
    return out


def validate(
    frame: pd.DataFrame,
    suite: str,
    *,
    id_column: str,
    data_docs_dir: Path | None = None,
) -> ValidationOutcome:
    """Validate ``frame`` with suite ``suite``, failing rows by ``id_column``, with
    complete results (every failing row); with ``data_docs_dir`` its Data Docs there."""
    return validate_many([(frame, suite, id_column)], data_docs_dir=data_docs_dir, complete=True)[0]


def validate_many(
    jobs: Sequence[tuple[pd.DataFrame, str, str]],
    *,
    data_docs_dir: Path | None = None,
    complete: bool = False,
) -> list[ValidationOutcome]:
    """Validate each ``(frame, suite, id_column)`` of one user's cycle, then build that
    user's Data Docs once (when ``data_docs_dir`` is given).

    ``complete=False`` (a cycle): summarised results, the counts exact, at most 20 failing
    rows per expectation. The batch holds the runner's lock from the first validation to
    the docs, so users validated in parallel threads never see each other's results.
    """
    for _, suite, _ in jobs:
        if suite not in SUITE_NAMES:
            raise ValueError(f"unknown suite {suite!r}: one of {', '.join(SUITE_NAMES)}")
    outcomes: list[ValidationOutcome] = []
    with _lock:
        state = _gx()
        store = state.context.validation_results_store
        try:
            for frame, suite, id_column in jobs:
                prepared = prepare(frame, suite)
                if complete:
                    definition = state.definition(suite)
                    result_format = {
                        "result_format": "COMPLETE",
                        "unexpected_index_column_names": [id_column],
                        "return_unexpected_index_query": False,
                    }
                else:  # counts and up to 20 example values; no per-row index lookups
                    definition = state.definition(suite, merged_checks(active_checks(suite, prepared)))
                    result_format = {"result_format": "BASIC"}
                result = definition.run(
                    batch_parameters={"dataframe": prepared}, result_format=result_format
                )
                outcomes.append(ValidationOutcome(
                    success=bool(result.success),
                    statistics=dict(result.statistics),
                    failures=_failures(result, id_column, per_row=complete),
                    failure_count=_failure_count(result),
                    gx_result=result,
                ))
            if data_docs_dir is not None and outcomes:
                index = _publish(state, Path(data_docs_dir), list(store.list_keys()))
                outcomes = [replace(o, data_docs_index=index) for o in outcomes]
        finally:
            _forget_results(state)
    return outcomes


#: Results a docs folder's index keeps listing (older pages are removed from the folder).
KEEP_PER_SITE = 30


def _publish(state: _Gx, directory: Path, new_keys: list[Any]) -> Path:
    """Render the new results' pages into ``directory`` and its index over the folder's
    own kept results; the store holds nothing of any other folder meanwhile (R1)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    directory = directory.resolve()
    store = state.context.validation_results_store
    backend = store._store_backend  # the serialized values: re-serializing 30 results cost ~0.5 s a cycle
    kept = state.kept.setdefault(directory, OrderedDict())
    first = not kept
    for key in new_keys:
        kept[key] = backend.get(store.key_to_tuple(key))
    while len(kept) > KEEP_PER_SITE:
        kept.popitem(last=False)
    for key, raw in kept.items():
        if key not in new_keys:
            backend.set(store.key_to_tuple(key), raw)
    targets = list(new_keys)
    if first:  # the suites' own pages, once per folder and process
        targets += [ExpectationSuiteIdentifier(name=n) for n in SUITE_NAMES]
    site = state.site(directory)
    urls = state.context.build_data_docs(site_names=[site], resource_identifiers=targets)
    index = directory / "index.html"
    if not index.exists() and urls.get(site):  # pragma: no cover - GX layout changed
        index = Path(urls[site].removeprefix("file://"))
    return index


def _forget_results(state: _Gx) -> None:
    """Empty the result store: no result outlives its batch there (a long-lived worker
    does not grow, and the next user's docs cannot list it)."""
    store = state.context.validation_results_store
    for key in store.list_keys():
        store.remove_key(key)


def _failure_count(result: Any) -> int:
    return sum(
        int((res.result or {}).get("unexpected_count") or 1)
        for res in result.results if not res.success
    )


#: Tests that can fail on a column holding no value at all (every other test passes
#: trivially there: GX's column-map expectations look at the values that are set).
_PRESENCE_TESTS = frozenset({"not_null", "not_blank", "has_name"})


#: Tests a regular expression can state, in GX's pandas semantics (``str.contains``, a
#: search), so several of one column merge into one ``match_regex`` expectation.
_REGEX_TESTS = frozenset({"no_control", "length", "match", "max_lines", "line_length", "date_from"})


def _as_lookahead(check: Check) -> str:
    r"""``check`` as a lookahead at the start of the value: what holds for the value holds
    there (``[\s\S]`` crosses line breaks, ``\Z`` is the very end, unlike ``$``)."""
    if check.test == "no_control":
        return rf"(?![\s\S]*?(?:{check.pattern}))"
    if check.test == "length":
        return rf"(?=[\s\S]{{0,{check.limit}}}\Z)"
    return rf"(?=[\s\S]*?(?:{check.pattern}))"


def merged_checks(checks: tuple[Check, ...]) -> tuple[Check, ...]:
    """The same verdicts with fewer GX expectations: a cycle pays GX ~12 ms of bookkeeping
    per expectation, whatever its rows (issue 16 item 5), so the regex-like checks of one
    column (control characters, length, format, lines) become one regular expression that
    a value matches exactly when it passes each of them; its reason lists theirs. A value
    failing several of them counts once: ``failure_count`` counts failing values. The
    committed suites (expectations/suites) keep one expectation per check, and
    :func:`validate` (complete results) runs them as they are."""
    groups: dict[tuple[str, str], list[Check]] = {}
    for c in checks:
        if c.test in _REGEX_TESTS:
            groups.setdefault((c.column, c.rows), []).append(c)
    out: list[Check] = []
    for c in checks:
        group = groups.get((c.column, c.rows)) if c.test in _REGEX_TESTS else None
        if group is None or len(group) == 1:
            out.append(c)
        elif c is group[0]:
            out.append(Check(
                "match", c.column, "; ".join(g.statement for g in group),
                "; ".join(g.problem for g in group),
                pattern=r"\A" + "".join(_as_lookahead(g) for g in group), rows=c.rows,
            ))
    return tuple(out)


def active_checks(suite: str, prepared: pd.DataFrame) -> tuple[Check, ...]:
    """The checks of ``suite`` that can fail on ``prepared``: a check of a column without
    any value passes whatever it tests, so a cycle does not pay GX to evaluate it."""
    filled = {c for c in prepared.columns if prepared[c].notna().any()}
    return tuple(c for c in SUITES[suite][1] if c.test in _PRESENCE_TESTS or c.column in filled)


def _failures(result: Any, id_column: str, *, per_row: bool = True) -> pd.DataFrame:
    """One row per failing value (``per_row``, complete results), else one row per
    failing expectation (a summary names no rows)."""
    rows: dict[str, list] = {c: [] for c in FAILURE_COLUMNS}
    for res in result.results:
        if res.success:
            continue
        config = res.expectation_config
        kind = config.type
        column = config.kwargs.get("column")
        reason = (config.meta or {}).get("reason") or kind
        found = res.result or {}
        ids = [
            entry.get(id_column) if isinstance(entry, dict) else entry
            for entry in found.get("unexpected_index_list") or found.get("partial_unexpected_index_list") or []
        ]
        if not per_row:
            ids = [None]
            reason = f"{reason} ({found.get('unexpected_count', '?')} values; see the Data Docs)"
        elif not ids:  # failed as a whole (e.g. GX could not evaluate it): no row to blame
            ids = [None]
            reason = f"{reason} (the expectation failed as a whole; see the Data Docs)"
        n = len(ids)
        rows["record_id"] += [None if _missing(i) else str(i) for i in ids]
        rows["expectation"] += [kind] * n
        rows["column"] += [column] * n
        rows["reason"] += [reason] * n
    return pd.DataFrame({c: pd.Series(rows[c], dtype=object) for c in FAILURE_COLUMNS})


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
