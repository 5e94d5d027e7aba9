"""The usage store: accounts, API keys (hashed), usage rows; SQLite (WAL) or PostgreSQL."""

from distillery.store.accounts import (
    AccountInfo,
    KeyIdentity,
    KeyInfo,
    NewKey,
    create_account,
    create_key,
    get_account,
    hash_key,
    list_account_names,
    list_accounts,
    list_keys,
    lookup_key,
    provision,
    revoke_key,
    set_status,
)
from distillery.store.audit_models import AuditCursor, AuditDecision, AuditRow
from distillery.store.db import default_url, make_engine, migrate
from distillery.store.models import ACCOUNT_STATUSES, Account, ApiKey, Base, Usage
from distillery.store.usage import UsageWriter

__all__ = [
    "ACCOUNT_STATUSES", "Account", "AccountInfo", "ApiKey", "AuditCursor", "AuditDecision",
    "AuditRow", "Base", "KeyIdentity", "KeyInfo",
    "NewKey", "Usage", "UsageWriter", "create_account", "create_key", "default_url",
    "get_account", "hash_key", "list_account_names", "list_accounts", "list_keys",
    "lookup_key", "make_engine", "migrate", "provision", "revoke_key", "set_status",
]
