"""Great Expectations suites (``suites/*.json``) and the code that runs them (R19).

- ``build_suites``: generates the suites from ``contactsync.model`` / ``contactsync.quality``
  (``python -m expectations.build_suites``); no GX import.
- ``runner.validate(frame, suite, id_column=..., data_docs_dir=...)``: runs a suite with GX
  (imported lazily there) and returns the failing rows' ids and, optionally, Data Docs.

Quarantine itself is decided by ``contactsync.quality`` (fast, no GX); the suites say the
same checks declaratively for the report.
"""
