"""eolake Python client: search, thesaurus lookups, orders, and verified, resumable downloads."""

from eolake_client._version import __version__
from eolake_client.auth import ApiKey, BearerToken, ClientCredentials
from eolake_client.client import Client, FileResult
from eolake_client.errors import (
    ChecksumMismatch,
    EolakeError,
    Forbidden,
    Interrupted,
    NotAnApi,
    NotFound,
    OrderFailed,
    QuotaExceeded,
    Unauthorized,
    Unreachable,
)

__all__ = [
    "ApiKey",
    "BearerToken",
    "ChecksumMismatch",
    "Client",
    "ClientCredentials",
    "EolakeError",
    "FileResult",
    "Forbidden",
    "Interrupted",
    "NotAnApi",
    "NotFound",
    "OrderFailed",
    "QuotaExceeded",
    "Unauthorized",
    "Unreachable",
    "__version__",
]
