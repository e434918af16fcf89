"""Rate limits on expensive routes: per user when authenticated, else per client address (believed only from
trusted proxies), 429 problem+json with Retry-After past the bound, configured in the spec for every target."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from eolake.embedded.gateway import create_gateway
from eolake_catalog.settings import CatalogSettings
from eolake_kit import ServiceSettings, install_kit
from eolake_kit.auth import create_api_key
from eolake_kit.ratelimit import TokenBuckets, TrustedProxies
from eolake_spec import load_stack, manifests
from servers import served

BURST = 3
RATE = 0.05  # a token every 20 s: nothing refills while a test runs


def limited_app(keys_file, **settings) -> FastAPI:
    app = FastAPI()

    @app.get("/search")
    async def search() -> dict:
        return {"searched": True}

    @app.get("/collections")
    async def collections() -> dict:
        return {"collections": []}

    limits = {"requests_per_second": RATE, "burst": BURST, "routes": [r"(GET|POST) /search$"]}
    return install_kit(
        app,
        ServiceSettings(
            service_name="demo", root_path="/demo", rate_limit=limits, auth={"api_keys_file": keys_file}, **settings
        ),
    )


@pytest.fixture
def keys(tmp_path):
    path = tmp_path / "api-keys.json"
    return path, create_api_key(path, "alice", "user"), create_api_key(path, "bob", "user")


@pytest.fixture
def service(keys):
    with served(limited_app(keys[0]), proxy_headers=False) as url:
        yield url + "/demo"


def from_address(address: str, **headers) -> dict:
    """What a trusted proxy (the gateway, an ingress) sends on behalf of a client at `address`."""
    return {"X-Forwarded-For": address, **headers}


def use_up(url: str, headers: dict) -> None:
    for _ in range(BURST):
        assert httpx.get(url + "/search", headers=headers).status_code == 200


def test_past_the_burst_a_client_gets_429_with_retry_after_and_another_client_does_not(service):
    use_up(service, from_address("203.0.113.7"))
    refused = httpx.get(service + "/search", headers=from_address("203.0.113.7"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= int(1 / RATE) - 1
    body = refused.json()
    assert body["status"] == 429 and body["limit"] == "requests-per-second" and "client address" in body["detail"]
    assert body["reset"] and body["request_id"]

    assert httpx.get(service + "/search", headers=from_address("203.0.113.8")).status_code == 200
    # Only the expensive routes count, and the probes never do.
    assert httpx.get(service + "/collections", headers=from_address("203.0.113.7")).status_code == 200
    assert httpx.get(service + "/healthz", headers=from_address("203.0.113.7")).status_code == 200


def test_a_client_cannot_escape_its_bucket_by_writing_x_forwarded_for(service):
    use_up(service, from_address("203.0.113.7"))
    # The proxy appends the real address after whatever the client wrote: read from the right, the left is unused.
    spoofed = httpx.get(service + "/search", headers=from_address("198.51.100.1, 203.0.113.7"))
    assert spoofed.status_code == 429


def test_an_authenticated_user_is_counted_as_the_user_not_the_address(service, keys):
    _, alice, bob = keys
    use_up(service, from_address("203.0.113.7"))
    # Alice behind the exhausted address still has her own bucket...
    for address in ("203.0.113.7", "203.0.113.20", "203.0.113.21"):
        assert httpx.get(service + "/search", headers=from_address(address, **{"X-API-Key": alice})).status_code == 200
    # ...which follows her to any address once used up, while Bob's is untouched.
    refused = httpx.get(service + "/search", headers=from_address("203.0.113.22", **{"X-API-Key": alice}))
    assert refused.status_code == 429 and "per user" in refused.json()["detail"]
    assert httpx.get(service + "/search", headers=from_address("203.0.113.22", **{"X-API-Key": bob})).status_code == 200


def test_a_bad_key_does_not_buy_a_fresh_bucket(service):
    use_up(service, from_address("203.0.113.7"))
    forged = httpx.get(service + "/search", headers=from_address("203.0.113.7", **{"X-API-Key": "made-up"}))
    assert forged.status_code == 429


def test_the_platform_s_own_calls_are_not_limited(service):
    # A trusted address naming no client: a service calling another (the federated search calls the catalog).
    for _ in range(BURST * 3):
        assert httpx.get(service + "/search").status_code == 200


def test_forwarded_addresses_from_an_untrusted_peer_are_ignored(keys):
    with served(limited_app(keys[0], trusted_proxies=["10.0.0.0/8"]), proxy_headers=False) as url:
        for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):  # all one client: the loopback peer
            assert httpx.get(url + "/demo/search", headers=from_address(address)).status_code == 200
        assert httpx.get(url + "/demo/search", headers=from_address("203.0.113.4")).status_code == 429


def test_through_the_gateway_the_client_address_it_forwards_is_the_key(service):
    gateway = create_gateway({"/demo": service.removesuffix("/demo")}, public_url="http://127.0.0.1:8080")
    with served(gateway, proxy_headers=False) as base:
        use_up(base + "/demo", {})
        refused = httpx.get(base + "/demo/search")
        assert refused.status_code == 429 and refused.headers["retry-after"]
        # A client's own X-Forwarded-For through the gateway changes nothing.
        assert httpx.get(base + "/demo/search", headers={"X-Forwarded-For": "192.0.2.99"}).status_code == 429
    # Meanwhile the services' own calls (no forwarded address) go on.
    assert httpx.get(service + "/search").status_code == 200


def test_token_bucket_refills_at_its_rate_up_to_the_burst():
    now = [0.0]
    buckets = TokenBuckets(rate=2, burst=4, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("a") == 0 and buckets.take("a") == pytest.approx(0.5)
    now[0] += 100
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 0] and buckets.take("a") > 0
    assert buckets.take("b") == 0


def test_trusted_proxies_resolve_the_client():
    proxies = TrustedProxies(["127.0.0.0/8", "10.0.0.0/8"])
    assert proxies.client("127.0.0.1", ["203.0.113.7"]) == "203.0.113.7"
    assert proxies.client("127.0.0.1", ["198.51.100.1, 203.0.113.7, 10.1.2.3"]) == "203.0.113.7"
    assert proxies.client("192.0.2.1", ["203.0.113.7"]) == "192.0.2.1"
    assert proxies.client("127.0.0.1", []) is None
    assert proxies.client("127.0.0.1", ["127.0.0.1"]) == "127.0.0.1"  # a local user, through the gateway
    assert proxies.client("127.0.0.1", ["not-an-address"]) == "not-an-address"


def test_the_spec_sets_the_rates_every_target_reads(monkeypatch):
    platform = load_stack("local")
    env = platform.service_env("tiles")
    assert (env["EOLAKE_TILES_RATE_LIMIT__REQUESTS_PER_SECOND"], env["EOLAKE_TILES_RATE_LIMIT__BURST"]) == (
        "50.0",
        "200",
    )  # the tiles manifest's default: a map view asks for dozens of tiles at once
    assert "EOLAKE_WEB_RATE_LIMIT__BURST" not in platform.service_env("web")  # nothing expensive there

    document = platform.model_dump(mode="json")
    document["services"]["catalog"]["rate_limit"] = {"requests_per_second": 2, "burst": 5}
    document["trusted_proxies"] = ["10.0.0.0/8"]
    for name, value in platform.model_validate(document).service_env("catalog").items():
        monkeypatch.setenv(name, value)  # as the embedded runner, the ConfigMap and the host's unit pass them
    settings = CatalogSettings()
    assert (settings.rate_limit.requests_per_second, settings.rate_limit.burst) == (2, 5)
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8"]


def test_spec_refuses_a_rate_limit_without_a_rate():
    platform = load_stack("local").model_dump(mode="json")
    platform["services"]["catalog"]["rate_limit"] = {"requests_per_second": 0, "burst": 5}
    with pytest.raises(ValueError, match="requests_per_second"):
        load_stack("local").model_validate(platform)


@pytest.mark.parametrize(
    "service, route",
    [
        ("catalog", "POST /search"),
        ("catalog", "GET /collections/garonne-wse/items"),
        ("search", "GET /search"),
        ("search", "GET /collections/garonne-wse/items"),
        ("tiles", "GET /collections/garonne-wse/tiles/WebMercatorQuad/1/1/1.png"),
        ("tiles", "POST /collections/garonne-wse/statistics"),
        ("tiles", "POST /searches/register"),
        ("downloads", "POST /orders"),
        ("downloads", "POST /retrievals"),  # staging from a slow tier: an order by another name
    ],
)
def test_every_expensive_route_is_rate_limited(service, route):
    assert any(re.match(pattern, route) for pattern in manifests()[service].rate_limited), route
