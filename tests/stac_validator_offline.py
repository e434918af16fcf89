"""stac-api-validator run offline: the JSON schemas stac-validator fetches are read from tests/data/stac-schemas
(copies of schemas.stacspec.org v1.0.0 and geojson.org), and any other schema it asks for fails loudly."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import requests
from tenacity import retry, retry_if_result, stop_after_attempt

SCHEMAS = Path(__file__).parent / "data" / "stac-schemas"
JSON_SCHEMA_META = {"json-schema.org/draft-07/schema", "json-schema.org/draft-07/schema#"}


class SchemaNotVendored(LookupError):
    pass


def vendored_schema(url: str) -> dict:
    """The vendored copy of a schema URL (the host and path under tests/data/stac-schemas)."""
    parts = urlsplit(url)
    if f"{parts.netloc}{parts.path}" in {m.rstrip("#") for m in JSON_SCHEMA_META}:
        from jsonschema_specifications import REGISTRY

        return REGISTRY.contents("http://json-schema.org/draft-07/schema#")
    path = SCHEMAS / parts.netloc / parts.path.lstrip("/")
    if not parts.netloc or not path.is_file():
        raise SchemaNotVendored(f"schema not vendored in {SCHEMAS}: {url}")
    return json.loads(path.read_text())


@contextmanager
def offline_schemas():
    """stac-validator loads every schema through `fetch_and_parse_file` (its cache calls the module's function):
    schema URLs come from the vendored copies, everything else (the API under test on loopback) as before."""
    from stac_validator import utilities

    real = utilities.fetch_and_parse_file

    def fetch(input_path: str, headers: dict | None = None) -> dict:
        host = urlsplit(input_path).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1") or not utilities.is_url(input_path):
            return real(input_path, headers)
        return vendored_schema(input_path)

    with mock.patch.object(utilities, "fetch_and_parse_file", fetch):
        utilities.fetch_and_parse_schema.cache_clear()
        try:
            yield
        finally:
            utilities.fetch_and_parse_schema.cache_clear()


def _rate_limited(response: requests.Response) -> bool:
    return response.status_code == 429


@contextmanager
def patient_requests(attempts: int = 20):
    """A well-behaved client under the platform's rate limit: a 429 is sent again after its Retry-After (the
    validator fires hundreds of requests in a burst)."""
    real = requests.Session.send

    def send(session, request, **kwargs):
        wait = {"seconds": 0.0}

        def waited(_state) -> float:
            return wait["seconds"]

        @retry(
            retry=retry_if_result(_rate_limited),
            stop=stop_after_attempt(attempts),
            wait=waited,
            retry_error_callback=lambda state: state.outcome.result(),
        )
        def attempt():
            response = real(session, request, **kwargs)
            wait["seconds"] = float(response.headers.get("Retry-After", "1")) if _rate_limited(response) else 0
            return response

        return attempt()

    with mock.patch.object(requests.Session, "send", send):
        yield


def validate(
    root_url: str, classes: list[str], collection: str, geometry: dict, headers: dict | None = None, **options
) -> tuple[list[str], list[str]]:
    """stac-api-validator's (warnings, errors) for `classes` of the API at root_url."""
    from stac_api_validator.validations import QueryConfig, validate_api

    query = QueryConfig(**{f: options.pop(f, None) for f in QueryConfig.__dataclass_fields__})
    with offline_schemas(), patient_requests():
        warnings, errors = validate_api(
            root_url=root_url,
            ccs_to_validate=classes,
            collection=collection,
            geometry=json.dumps(geometry),
            auth_bearer_token=None,
            auth_query_parameter=None,
            fields_nested_property=options.pop("fields_nested_property", None),
            validate_pagination=options.pop("validate_pagination", False),
            query_config=query,
            transaction_collection=None,
            headers=headers,
            open_assets_urls=False,
        )
    return [m for _, m in warnings.errors], [m for _, m in errors.errors]
