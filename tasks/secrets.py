"""The Outlook client secret from a Prefect Secret block (``outlook.client_secret_block``).

Prefect users keep credentials in blocks (``prefect block create secret`` or
``Secret(value=...).save(name)``); ``contactsync`` never imports Prefect, so this resolver
is registered with :data:`contactsync.config.SETTINGS_RESOLVERS` when ``tasks`` is imported
(every flow imports it). The block is read when the settings are loaded inside a flow
run: its value lives only in the ``SecretStr`` of those settings, never in a parameter, a
log line, a report or the state store. A secret given directly
(``CONTACT_SYNC_OUTLOOK__CLIENT_SECRET`` or the file) wins over the block.
"""

from __future__ import annotations

from pydantic import SecretStr

from contactsync.config import SETTINGS_RESOLVERS, Settings
from contactsync.errors import ConfigError


def resolve_client_secret(settings: Settings) -> Settings:
    """Settings whose ``outlook.client_secret`` holds the named block's value, if needed."""
    outlook = settings.outlook
    name = outlook.client_secret_block.strip()
    if not name or outlook.client_secret.get_secret_value():
        return settings
    from prefect.blocks.system import Secret

    try:
        block = Secret.load(name)
    except ValueError:  # Prefect's answer for a block that does not exist
        raise ConfigError(
            f"outlook.client_secret_block names the Prefect Secret block {name!r}, which the "
            "Prefect API does not have",
            hint=f"create it (`prefect block create secret`, name {name!r}) on the API the flows "
            "use, or set CONTACT_SYNC_OUTLOOK__CLIENT_SECRET instead",
        ) from None
    value = str(block.value.get_secret_value())  # not .get(): it would turn "123" into 123
    if not value:
        raise ConfigError(f"the Prefect Secret block {name!r} is empty", hint="store the app's client secret in it")
    return settings.model_copy(update={"outlook": outlook.model_copy(update={"client_secret": SecretStr(value)})})


if resolve_client_secret not in SETTINGS_RESOLVERS:
    SETTINGS_RESOLVERS.append(resolve_client_secret)
