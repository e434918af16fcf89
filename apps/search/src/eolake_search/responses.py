"""Answers of the federated search whose media type is not plain JSON; as a route's response_class, the OpenAPI
document names that type too."""

from typing import Any

import orjson
from fastapi.responses import JSONResponse

GEOJSON = "application/geo+json"
SCHEMA = "application/schema+json"


class GeoJSONResponse(JSONResponse):
    """Rendered by orjson: a page of items is the largest answer the service writes."""

    media_type = GEOJSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class SchemaResponse(JSONResponse):
    media_type = SCHEMA
