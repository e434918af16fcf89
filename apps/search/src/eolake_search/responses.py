"""Answers of the federated search whose media type is not plain JSON; as a route's response_class, the OpenAPI
document names that type too."""

from fastapi.responses import JSONResponse

GEOJSON = "application/geo+json"
SCHEMA = "application/schema+json"


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON


class SchemaResponse(JSONResponse):
    media_type = SCHEMA
