"""What every part of the spec model is: a pydantic model that refuses unknown fields (a typo is an error)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
