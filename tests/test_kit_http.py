"""The kit's HTTP hygiene on any service: security headers, CORS from the settings, JSON bodies that must be
objects, and an OpenAPI document that lists what the service really answers and who may call what."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from eolake_kit import ServiceSettings, __version__, install_kit, require_role
from eolake_kit.auth import AuthConfig, create_api_key
from servers import served

PROBLEM = "application/problem+json"


class Thing(BaseModel):
    name: str


def demo_app(settings: ServiceSettings) -> FastAPI:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def read(thing_id: str, limit: int = 10) -> dict:
        return {"id": thing_id, "limit": limit}

    @app.post("/things", dependencies=[Depends(require_role("user"))])
    async def create(thing: Thing) -> dict:
        return {"created": thing.name}

    @app.post("/search")  # the catalog's manifest declares its POST /search public: a read over POST
    async def search(thing: Thing) -> dict:
        return {"found": thing.name}

    @app.put("/things/{thing_id}", dependencies=[Depends(require_role("user"))])
    async def replace(thing_id: str, thing: Thing) -> dict:
        return {"replaced": thing_id}

    @app.post("/touch", dependencies=[Depends(require_role("public"))])  # a POST with no body at all
    async def touch() -> dict:
        return {"touched": True}

    @app.get("/page")
    async def page():
        from starlette.responses import HTMLResponse

        return HTMLResponse("<p>docs</p>")

    return install_kit(app, settings)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "api-keys.json"
    return path, create_api_key(path, "someone", "user")


@pytest.fixture(scope="module")
def service(keys):
    settings = ServiceSettings(
        service_name="catalog",
        root_path="/stac",
        public_url="https://eo.example.org",
        cors_origins=["https://maps.example.org"],
        auth=AuthConfig(api_keys_file=keys[0]),
    )
    with served(demo_app(settings)) as url:
        yield url + "/stac"


def test_every_answer_carries_the_security_headers(service):
    for response in (
        httpx.get(f"{service}/things/a"),
        httpx.get(f"{service}/things/a?limit=x"),
        httpx.get(f"{service}/nowhere"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert response.headers["strict-transport-security"].startswith("max-age=")  # the public URL is https
    html = httpx.get(f"{service}/page")
    assert html.headers["content-security-policy"] == "frame-ancestors 'none'"  # docs pages load their scripts


def test_authenticated_answers_are_never_cached_by_shared_caches(service, keys):
    assert "cache-control" not in httpx.get(f"{service}/things/a").headers
    mine = httpx.get(f"{service}/things/a", headers={"X-API-Key": keys[1]})
    assert mine.status_code == 200 and mine.headers["cache-control"] == "private, no-store"


def test_cors_allows_the_configured_origin_without_credentials(service):
    preflight = httpx.options(
        f"{service}/things",
        headers={
            "Origin": "https://maps.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://maps.example.org"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    simple = httpx.get(f"{service}/things/a", headers={"Origin": "https://maps.example.org"})
    assert simple.headers["access-control-allow-origin"] == "https://maps.example.org"
    assert "Retry-After" in simple.headers["access-control-expose-headers"]
    elsewhere = httpx.options(
        f"{service}/things", headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}
    )
    assert elsewhere.status_code == 400 and "access-control-allow-origin" not in elsewhere.headers


@pytest.mark.parametrize("body", ["null", "[]", '"A"', "0", "  \n [1, 2]", "true"])
def test_a_json_body_that_is_not_an_object_is_a_400(service, body):
    response = httpx.post(f"{service}/search", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == "the request body must be a JSON object"


def test_bodies_sent_where_no_route_takes_them_are_left_to_routing(service):
    assert httpx.post(f"{service}/page", content=b"null").status_code == 405
    assert httpx.post(f"{service}/nowhere", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 404


def test_a_put_without_a_body_is_a_400_and_a_post_may_have_none(service):
    empty_put = httpx.put(f"{service}/things/a")
    assert empty_put.status_code == 400 and "PUT request carries" in empty_put.json()["detail"]
    assert httpx.post(f"{service}/search").status_code == 400  # the route's own check: its body is required
    assert httpx.post(f"{service}/touch").status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_that_is_not_json_is_a_415(service, content_type):
    response = httpx.post(f"{service}/search", content=b"name=x", headers={"Content-Type": content_type})
    assert response.status_code == 415 and response.headers["content-type"] == PROBLEM
    assert content_type in response.json()["detail"]


def test_a_json_object_arriving_in_pieces_reaches_the_route(service):
    def pieces():
        yield b"  \n"
        yield b""
        yield b'{"name": '
        yield b'"chunked"}'

    response = httpx.post(f"{service}/search", content=pieces(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json() == {"found": "chunked"}
    broken = httpx.post(f"{service}/search", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.headers["content-type"] == PROBLEM


def test_the_openapi_document_tells_the_truth(service):
    doc = httpx.get(f"{service}/openapi.json").json()
    assert doc["openapi"].startswith("3.1.") and doc["info"]["version"] == __version__ != "0+unknown"
    assert httpx.get(f"{service}/healthz").json()["version"] == __version__
    assert "422" not in str({p: {m: o["responses"] for m, o in i.items()} for p, i in doc["paths"].items()})
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "a service-account key (eolake_kit.auth API keys)",
    }
    read = doc["paths"]["/things/{thing_id}"]["get"]
    assert sorted(read["responses"]) == ["200", "400", "404", "414", "431", "503", "504"]
    assert read["responses"]["404"]["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "security" not in read
    write = doc["paths"]["/things"]["post"]
    assert sorted(write["responses"]) == ["200", "400", "401", "403", "408", "413", "414", "415", "431", "503", "504"]
    assert write["security"] == [{"apiKey": []}] and write["x-eolake-role"] == "user"
    public = doc["paths"]["/search"]["post"]
    assert "security" not in public and "read" in public["x-eolake-public"]
    # The catalog's manifest puts a token bucket on POST /search: its 429 is documented there only.
    assert public["responses"]["429"]["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "429" not in read["responses"] and "429" not in write["responses"]
    assert doc["paths"]["/healthz"]["get"]["responses"].keys() == {"200"}


def test_a_write_without_its_role_is_refused_and_with_it_allowed(service, keys):
    anonymous = httpx.post(f"{service}/things", json={"name": "x"})
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == PROBLEM
    assert httpx.post(f"{service}/things", json={"name": "x"}, headers={"X-API-Key": keys[1]}).status_code == 200


def test_cors_origins_are_origins():
    with pytest.raises(ValueError, match="not \\* or an origin"):
        ServiceSettings(cors_origins=["https://maps.example.org/path"])
    assert ServiceSettings(cors_origins=["https://maps.example.org/"]).cors_origins == ["https://maps.example.org"]
