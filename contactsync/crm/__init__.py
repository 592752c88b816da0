"""The CRM side: Infor CRM tables, security-scoped reads (R1), writes (R5, R15, R18, R19).

- ``schema``: the tables of spec/CRM_SCHEMA.md (engines: ``contactsync.db``); ``setup``: ``init_database``;
- ``extract``: ``CrmReader`` (the user's sync group, email and account lookups);
- ``load``: ``CrmWriter`` (executes the CRM rows of a plan);
- ``ids``: ``IdAllocator`` (SalesLogix ids from a counter in the sync's state store);
- ``demo``: the demo data set (users, owners, accounts, contacts, sync groups).

Nothing is imported here, so ``contact-sync crm init`` stays quick to start.
"""
