"""The eolake service kit: what every service has in common.

Its names are imported on first use (PEP 562): a process that needs one module of the kit (the supervisor, the
gateway, a job worker) does not pay for FastAPI and the rest at start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eolake_kit.app import install_kit
    from eolake_kit.auth import Principal, principal, require_role
    from eolake_kit.problems import problem
    from eolake_kit.server import serve
    from eolake_kit.settings import ServiceSettings
    from eolake_kit.version import __version__

_EXPORTS = {
    "install_kit": "eolake_kit.app",
    "Principal": "eolake_kit.auth",
    "principal": "eolake_kit.auth",
    "require_role": "eolake_kit.auth",
    "problem": "eolake_kit.problems",
    "serve": "eolake_kit.server",
    "ServiceSettings": "eolake_kit.settings",
    "__version__": "eolake_kit.version",
}

__all__ = [
    "Principal",
    "ServiceSettings",
    "install_kit",
    "principal",
    "problem",
    "require_role",
    "serve",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'eolake_kit' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
