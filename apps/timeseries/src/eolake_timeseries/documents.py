"""The service's self-description for OGC API clients: landing page, conformance classes, the collections
(stations: OGC API Features items and OGC API EDR queries on the same collection; water-levels: OGC API Features,
one feature per measurement) and their queryables. No web framework here."""

from __future__ import annotations

from typing import Any

from eolake_timeseries.edr import PARAMETERS
from eolake_timeseries.features import (
    COLLECTION,
    COVJSON,
    CSV,
    GEOJSON,
    OBSERVATION_QUERYABLES,
    OBSERVATIONS,
    QUERYABLES,
)
from eolake_timeseries.query import CRS84

JSON = "application/json"
FEATURES = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf"
FILTERING = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf"
CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf"
EDR = "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf"
COMMON = "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf"
CONFORMANCE = [
    f"{COMMON}/core",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    f"{FEATURES}/core",
    f"{FEATURES}/geojson",
    f"{FILTERING}/queryables",
    f"{FILTERING}/queryables-query-parameters",
    f"{FILTERING}/filter",
    f"{FILTERING}/features-filter",
    f"{CQL2}/cql2-text",
    f"{CQL2}/cql2-json",
    f"{CQL2}/basic-cql2",
    f"{CQL2}/advanced-comparison-operators",
    f"{CQL2}/case-insensitive-comparison",
    f"{CQL2}/basic-spatial-functions",
    f"{CQL2}/spatial-functions",
    f"{CQL2}/temporal-functions",
    f"{CQL2}/property-property",
    f"{EDR}/core",
    f"{EDR}/collections",
    f"{EDR}/json",
    f"{EDR}/covjson",
]
DATA_QUERIES = {
    "position": ("Water levels at a position (WKT POINT or MULTIPOINT)", COVJSON),
    "area": ("Water levels within an area (WKT POLYGON or MULTIPOLYGON)", COVJSON),
    "locations": ("Water levels of one station, by its id", COVJSON),
    "items": ("The stations as OGC API Features", GEOJSON),
}
OUTPUT_FORMATS = ["CoverageJSON", "CSV"]


def landing(base: str) -> dict[str, Any]:
    return {
        "title": "eolake time series",
        "description": "Hydrology virtual stations (OGC API Features) and their water levels (OGC API EDR)",
        "links": [
            {"rel": "self", "href": f"{base}/", "type": JSON, "title": "this document"},
            {
                "rel": "service-desc",
                "href": f"{base}/api",
                "type": "application/vnd.oai.openapi+json;version=3.1",
                "title": "the API definition",
            },
            {"rel": "service-doc", "href": f"{base}/api.html", "type": "text/html", "title": "the API documentation"},
            {"rel": "conformance", "href": f"{base}/conformance", "type": JSON, "title": "conformance classes"},
            {"rel": "data", "href": f"{base}/collections", "type": JSON, "title": "collections"},
        ],
    }


def conformance() -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


def _temporal(features: list[dict[str, Any]]) -> list[str | None]:
    starts = [f["properties"]["start_time"] for f in features if f["properties"]["start_time"]]
    ends = [f["properties"]["end_time"] for f in features if f["properties"]["end_time"]]
    return [min(starts) if starts else None, max(ends) if ends else None]


def _bbox(features: list[dict[str, Any]]) -> list[float]:
    if not features:
        return [-180.0, -90.0, 180.0, 90.0]
    lons = [f["geometry"]["coordinates"][0] for f in features]
    lats = [f["geometry"]["coordinates"][1] for f in features]
    return [min(lons), min(lats), max(lons), max(lats)]


def _data_queries(url: str) -> dict[str, Any]:
    return {
        name: {
            "link": {
                "href": f"{url}/{name}",
                "rel": "data",
                "type": media,
                "title": title,
                "variables": {
                    "title": title,
                    "query_type": name,
                    "output_formats": ["GeoJSON", "CSV"] if name == "items" else OUTPUT_FORMATS,
                    "default_output_format": "GeoJSON" if name == "items" else "CoverageJSON",
                    "crs_details": [{"crs": "CRS84", "wkt": CRS84}],
                },
            }
        }
        for name, (title, media) in DATA_QUERIES.items()
    }


def _extent(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "spatial": {"bbox": [_bbox(features)], "crs": CRS84},
        "temporal": {"interval": [_temporal(features)], "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"},
    }


def _feature_links(url: str) -> list[dict[str, Any]]:
    return [
        {"rel": "self", "href": url, "type": JSON},
        {"rel": "items", "href": f"{url}/items", "type": GEOJSON, "title": "features (GeoJSON)"},
        {"rel": "items", "href": f"{url}/items?f=csv", "type": CSV, "title": "features (CSV)"},
        {
            "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
            "href": f"{url}/queryables",
            "type": "application/schema+json",
            "title": "queryables",
        },
    ]


def observations(base: str, features: list[dict[str, Any]]) -> dict[str, Any]:
    """The water-levels collection: every measurement of every station as a feature."""
    url = f"{base}/collections/{OBSERVATIONS}"
    return {
        "id": OBSERVATIONS,
        "title": "Water levels of the virtual stations",
        "description": "One feature per measurement: name, start_time, wse (m above EGM2008) and wse_u (its "
        "uncertainty, m), at the station's location",
        "itemType": "feature",
        "crs": [CRS84],
        "storageCrs": CRS84,
        "extent": _extent(features),
        "links": _feature_links(url),
    }


def collection(base: str, features: list[dict[str, Any]]) -> dict[str, Any]:
    """The stations collection: its features, its EDR queries, its extent (of the stations listed)."""
    url = f"{base}/collections/{COLLECTION}"
    return {
        "id": COLLECTION,
        "title": "Hydrology virtual stations",
        "description": "Virtual stations of rivers measured by satellite altimetry, and their water levels "
        "(m above EGM2008, with uncertainty)",
        "itemType": "feature",
        "crs": [CRS84],
        "storageCrs": CRS84,
        "extent": _extent(features),
        "data_queries": _data_queries(url),
        "output_formats": OUTPUT_FORMATS,
        "parameter_names": PARAMETERS,
        "links": [
            *_feature_links(url),
            *(
                {"rel": "data", "href": f"{url}/{name}", "type": media, "title": title}
                for name, (title, media) in DATA_QUERIES.items()
                if name != "items"
            ),
        ],
    }


def collections(base: str, features: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "collections": [collection(base, features), observations(base, features)],
        "links": [{"rel": "self", "href": f"{base}/collections", "type": JSON}],
    }


def queryables(base: str, collection_id: str) -> dict[str, Any]:
    properties = QUERYABLES if collection_id == COLLECTION else OBSERVATION_QUERYABLES
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base}/collections/{collection_id}/queryables",
        "type": "object",
        "title": f"Queryables of {collection_id}",
        "properties": properties,
        "additionalProperties": False,
    }
