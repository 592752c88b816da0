"""Prefect tasks wrapping ``contactsync``. Importing the package registers the settings
resolvers the orchestration layer owns (the client secret from a Prefect Secret block)."""

from tasks import secrets as _secrets  # noqa: F401  (registers its resolver)
