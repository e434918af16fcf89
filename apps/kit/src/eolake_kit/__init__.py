"""The eolake service kit: what every service has in common."""

from eolake_kit.app import install_kit
from eolake_kit.auth import Principal, principal, require_role
from eolake_kit.problems import problem
from eolake_kit.server import serve
from eolake_kit.settings import ServiceSettings
from eolake_kit.version import __version__

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
