"""Deterministic demo data for the eolake platform."""

from eolake.demo.hydrology import generate_hydrology, parse_hydroweb

__all__ = ["generate_hydrology", "parse_hydroweb"]
