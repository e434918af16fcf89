"""The catalog of the platform's services: one record each (OGC API Records-style GeoJSON without geometry).

Titles and summaries come from the services' manifests; where they listen from the web view's settings (the
prefixes of this deployment). Live state is each service's own `/readyz`, which also names its OpenAPI
description, documentation page and conformance (the `status` link): the page reads it from the browser, so that
the web view calls no service itself.
"""

from __future__ import annotations

from eolake_spec import manifests

RECORDS_CONFORMANCE = "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/record-core"


def service_record(name: str, prefix: str) -> dict:
    manifest = manifests().get(name)
    base = prefix or ""
    return {
        "type": "Feature",
        "id": name,
        "geometry": None,
        "conformsTo": [RECORDS_CONFORMANCE],
        "properties": {
            "type": "service",
            "title": manifest.title if manifest else name,
            "description": manifest.summary if manifest else "",
            "keywords": [name],
            "endpoint": base or "/",
        },
        # Not the service's root: some services answer nothing there (a bare 404 is no place to send a user).
        "links": [
            {
                "rel": "status",
                "href": f"{base}/readyz",
                "type": "application/json",
                "title": "readiness, with the service's OpenAPI, documentation and conformance links",
            },
            {"rel": "metrics", "href": f"{base}/metrics", "type": "text/plain"},
        ],
    }


def matches(record: dict, q: str) -> bool:
    props = record["properties"]
    text = " ".join([record["id"], props["title"], props["description"], *props["keywords"]]).lower()
    return all(word in text for word in q.lower().split())


def catalog(services: dict[str, str], q: str | None = None) -> dict:
    records = [service_record(name, prefix) for name, prefix in sorted(services.items())]
    found = [r for r in records if not q or matches(r, q)]
    return {
        "type": "FeatureCollection",
        "id": "services",
        "title": "The platform's services",
        "description": "Every service of this platform: what it is, where it listens, how it describes itself",
        "numberMatched": len(found),
        "numberReturned": len(found),
        "features": found,
        "links": [
            {"rel": "self", "href": "/services.json", "type": "application/geo+json"},
            {"rel": "alternate", "href": "/#/services", "type": "text/html", "title": "the services page"},
        ],
    }
