"""Deterministic demo data for the eolake platform."""

from eolake.demo.hydrology import OfflineDemo, generate_hydrology
from eolake.demo.hydroweb import format_hydroweb, parse_hydroweb

__all__ = ["OfflineDemo", "format_hydroweb", "generate_hydrology", "parse_hydroweb"]
