"""The distribution's version: written once, in apps/kit/pyproject.toml (the test of the code's health holds every
package of the workspace to it); every service's OpenAPI info, /healthz and `eolake --version` show it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eolake-kit")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
