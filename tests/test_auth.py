"""Authentication against real parts: a loopback JWKS/OIDC server and a FastAPI app served by uvicorn."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import pydantic
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI

from eolake_kit.auth import (
    AuthConfig,
    Authenticator,
    AuthError,
    Principal,
    create_api_key,
    principal,
    require_role,
)
from oidc import AUDIENCE, KEYS, IdP
from servers import served


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    server = IdP(["k1", "ec1"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys.json"
    create_api_key(path, "bootstrap", "user")
    return path


@pytest.fixture(scope="module")
def app(idp: IdP, keys_file: Path) -> FastAPI:
    app = FastAPI()
    app.state.authenticator = Authenticator(idp.config(api_keys_file=keys_file))

    def show(p: Principal) -> dict[str, Any]:
        return {"subject": p.subject, "kind": p.kind, "roles": sorted(p.roles)}

    @app.get("/public")
    def public(p: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
        return show(p)

    @app.get("/user")
    def user(p: Annotated[Principal, Depends(require_role("user"))]) -> dict[str, Any]:
        return show(p)

    @app.get("/admin")
    def admin(p: Annotated[Principal, Depends(require_role("admin"))]) -> dict[str, Any]:
        return show(p)

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    return app


@pytest.fixture(scope="module")
def http(app: FastAPI) -> Iterator[httpx.Client]:
    with served(app, lifespan="off") as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(r: httpx.Response, detail: str, token: str | None = None) -> None:
    assert r.status_code == 401, r.text
    assert detail in r.json()["detail"]
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    if token:
        assert token not in r.text and token.split(".")[2] not in challenge


# ---------------------------------------------------------------- bearer tokens


def test_valid_token(http: httpx.Client, idp: IdP) -> None:
    r = http.get("/user", headers=bearer(idp.mint()))
    assert r.status_code == 200, r.text
    assert r.json() == {"subject": "alice", "kind": "oidc", "roles": ["public", "user"]}


def test_admin_implies_user(http: httpx.Client, idp: IdP) -> None:
    token = idp.mint(realm_roles=("admin", "offline_access"), sub="root")
    roles = http.get("/admin", headers=bearer(token)).json()["roles"]
    assert roles == ["admin", "offline_access", "public", "user"]
    assert http.get("/user", headers=bearer(token)).status_code == 200


def test_user_on_admin_route_is_403(http: httpx.Client, idp: IdP) -> None:
    r = http.get("/admin", headers=bearer(idp.mint()))
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]


def test_anonymous(http: httpx.Client) -> None:
    assert http.get("/public").json() == {"subject": "anonymous", "kind": "anonymous", "roles": ["public"]}
    r = http.get("/user")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error=" not in r.headers["WWW-Authenticate"]  # RFC 6750 3.1: no error code without credentials


def test_roles_fallback_to_top_level_claim(http: httpx.Client, idp: IdP) -> None:
    assert http.get("/public", headers=bearer(idp.mint(realm_access=None))).json()["roles"] == ["public"]
    token = idp.mint(realm_access=None, roles=["admin"])
    assert http.get("/admin", headers=bearer(token)).status_code == 200


def test_es256_key_from_jwks(http: httpx.Client, idp: IdP) -> None:
    assert http.get("/user", headers=bearer(idp.mint(kid="ec1"))).status_code == 200


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"iss": "http://evil.example"}, "wrong issuer"),
        ({"sub": None}, "'sub' claim"),
        ({"exp": None}, "'exp' claim"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
    ],
    ids=["expired", "audience", "issuer", "no-sub", "no-exp", "not-yet-valid"],
)
def test_bad_claims(http: httpx.Client, idp: IdP, claims: dict[str, Any], detail: str) -> None:
    token = idp.mint(**claims)
    assert_401(http.get("/user", headers=bearer(token)), detail, token)
    # a bad token is not downgraded to anonymous on a public route
    assert_401(http.get("/public", headers=bearer(token)), detail, token)


def test_leeway_and_audience_list(http: httpx.Client, idp: IdP) -> None:
    token = idp.mint(exp=int(time.time()) - 5, aud=["account", AUDIENCE])
    assert http.get("/user", headers=bearer(token)).status_code == 200


def test_tampered_signature(http: httpx.Client, idp: IdP) -> None:
    head, body, sig = idp.mint().split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 0xFF
    token = f"{head}.{body}.{_b64(bytes(raw))}"
    assert_401(http.get("/user", headers=bearer(token)), "invalid signature", token)


def test_signed_by_foreign_key(http: httpx.Client, idp: IdP) -> None:
    token = idp.mint(kid="forged-k1")
    assert_401(http.get("/user", headers=bearer(token)), "invalid signature", token)


def test_alg_none(http: httpx.Client, idp: IdP) -> None:
    claims = jwt.decode(idp.mint(), options={"verify_signature": False})
    token = _unsigned({"alg": "none", "typ": "JWT", "kid": "k1"}, claims) + "."
    assert_401(http.get("/user", headers=bearer(token)), "algorithm not allowed")


def test_hs256_signed_with_public_key(http: httpx.Client, idp: IdP) -> None:
    claims = jwt.decode(idp.mint(), options={"verify_signature": False})
    pem = (
        KEYS["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims)
    token = signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    assert_401(http.get("/user", headers=bearer(token)), "algorithm not allowed", token)


def test_an_algorithm_that_is_not_a_name_is_refused(http: httpx.Client, idp: IdP) -> None:
    token = _unsigned({"alg": {"x": 1}, "typ": "JWT", "kid": "k1"}, {"sub": "alice"}) + ".c2ln"
    assert_401(http.get("/user", headers=bearer(token)), "algorithm not allowed", token)


@pytest.mark.parametrize("header", ["Bearer not-a-jwt", "Basic YWxpY2U6c2VjcmV0", "Bearer"])
def test_malformed_authorization(http: httpx.Client, header: str) -> None:
    r = http.get("/public", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")


def test_keys_are_cached(http: httpx.Client, idp: IdP) -> None:
    token = idp.mint()
    assert http.get("/user", headers=bearer(token)).status_code == 200
    before = idp.fetches
    for _ in range(20):
        assert http.get("/user", headers=bearer(idp.mint())).status_code == 200
    assert idp.fetches == before


def test_key_rotation_refetches_once(http: httpx.Client, idp: IdP) -> None:
    assert http.get("/user", headers=bearer(idp.mint())).status_code == 200  # cache warm
    before = idp.fetches
    idp.kids.append("k2")
    for _ in range(5):
        assert http.get("/user", headers=bearer(idp.mint(kid="k2"))).status_code == 200
    assert idp.fetches == before + 1
    assert http.get("/user", headers=bearer(idp.mint(kid="k1"))).status_code == 200
    assert idp.fetches == before + 1


def test_unknown_kid(http: httpx.Client, idp: IdP) -> None:
    token = jwt.encode({"sub": "x"}, KEYS["rogue"], algorithm="RS256", headers={"kid": "nope"})
    assert_401(http.get("/user", headers=bearer(token)), "unknown signing key", token)


def test_refetch_cooldown_limits_unknown_kids(idp: IdP) -> None:
    auth = Authenticator(idp.config(jwks_refresh_cooldown_seconds=60))
    auth.authenticate(f"Bearer {idp.mint()}", None)
    before = idp.fetches
    token = jwt.encode({"sub": "x"}, KEYS["rogue"], algorithm="RS256", headers={"kid": "junk"})
    for _ in range(5):
        with pytest.raises(AuthError, match="unknown signing key"):
            auth.authenticate(f"Bearer {token}", None)
    assert idp.fetches == before


# ---------------------------------------------------------------- identity provider outages and discovery


def test_idp_down_is_503(http: httpx.Client, app: FastAPI) -> None:
    down = IdP(["k1"])
    down.stop()
    main = app.state.authenticator
    app.state.authenticator = Authenticator(down.config())
    try:
        r = http.get("/public", headers=bearer(down.mint()))
    finally:
        app.state.authenticator = main
    assert r.status_code == 503, r.text
    assert r.json()["detail"] == "identity provider unavailable"


def test_cached_keys_survive_idp_outage() -> None:
    idp = IdP(["k1"])
    auth = Authenticator(idp.config())
    assert auth.authenticate(f"Bearer {idp.mint()}", None).subject == "alice"
    idp.stop()
    assert auth.authenticate(f"Bearer {idp.mint()}", None).subject == "alice"
    with pytest.raises(AuthError) as err:  # a new kid needs the IdP
        auth.authenticate(f"Bearer {idp.mint(kid='k2')}", None)
    assert err.value.status == 503


def test_jwks_discovery(idp: IdP) -> None:
    auth = Authenticator(idp.config(oidc_jwks_url=None, roles_claim="resource_access.eolake.roles"))
    token = idp.mint(resource_access={"eolake": {"roles": ["admin"]}})
    who = auth.authenticate(f"Bearer {token}", None)
    assert who.has("admin") and who.has("user") and who.kind == "oidc"


def test_discovery_failure_is_503() -> None:
    down = IdP(["k1"])
    down.stop()
    auth = Authenticator(down.config(oidc_jwks_url=None))
    with pytest.raises(AuthError) as err:
        auth.authenticate(f"Bearer {down.mint()}", None)
    assert err.value.status == 503 and err.value.www_authenticate is None


# ---------------------------------------------------------------- API keys


def test_api_key(http: httpx.Client, keys_file: Path) -> None:
    key = create_api_key(keys_file, "ingest-bot", "admin")  # the running service picks up the new file
    assert key.startswith("eol_")
    r = http.get("/admin", headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    assert r.json() == {"subject": "apikey:ingest-bot", "kind": "apikey", "roles": ["admin", "public", "user"]}


def test_api_key_role_is_enforced(http: httpx.Client, keys_file: Path) -> None:
    key = create_api_key(keys_file, "reader", "user")
    assert http.get("/user", headers={"X-API-Key": key}).status_code == 200
    assert http.get("/admin", headers={"X-API-Key": key}).status_code == 403


def test_wrong_api_key(http: httpx.Client) -> None:
    for route in ("/user", "/public"):
        r = http.get(route, headers={"X-API-Key": "eol_wrong"})
        assert r.status_code == 401
        assert r.json()["detail"] == "invalid API key"
        assert "eol_wrong" not in r.text


def test_both_credentials_rejected(http: httpx.Client, idp: IdP, keys_file: Path) -> None:
    key = create_api_key(keys_file, "both", "user")
    assert http.get("/user", headers={"X-API-Key": key, **bearer(idp.mint())}).status_code == 401


def test_key_file_stores_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = [create_api_key(path, f"svc{i}", "user") for i in range(3)]
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for key in keys:
        assert key not in text and key[4:] not in text
    entries = json.loads(text)["keys"]
    assert [e["sha256"] for e in entries] == [hashlib.sha256(k.encode()).hexdigest() for k in keys]
    assert all(e["role"] == "user" and e["created"] for e in entries)
    with pytest.raises(ValueError):
        create_api_key(path, "svc0", "user")
    with pytest.raises(ValueError):
        create_api_key(path, "svc9", "root")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keys.json.")]  # no temp files left


def test_bad_key_file_keeps_last_good_set(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = create_api_key(path, "svc", "admin")
    auth = Authenticator(AuthConfig(api_keys_file=path))
    assert auth.authenticate(None, key).subject == "apikey:svc"
    path.write_text("{not json")
    assert auth.authenticate(None, key).subject == "apikey:svc"
    with pytest.raises(ValueError):
        Authenticator(AuthConfig(api_keys_file=path))  # but a broken file fails at startup


# ---------------------------------------------------------------- config and units


def test_config_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="audience"):
        AuthConfig(oidc_issuer="https://id.example/realms/eo")
    with pytest.raises(pydantic.ValidationError):
        AuthConfig(oidc_audience="eolake")
    with pytest.raises(pydantic.ValidationError):
        AuthConfig(leeway_seconds=-1)


def test_bearer_without_oidc_config() -> None:
    with pytest.raises(AuthError) as err:
        Authenticator(AuthConfig()).authenticate("Bearer a.b.c", None)
    assert err.value.status == 401


def test_principal_has() -> None:
    p = Principal("svc", frozenset({"admin"}), "apikey")
    assert p.has("admin") and p.has("user") and p.has("public") and not p.has("auditor")
    with pytest.raises(ValueError):
        require_role("superuser")


def test_event_loop_stays_free(http: httpx.Client, app: FastAPI) -> None:
    """A slow JWKS fetch runs in the threadpool, so other requests are served meanwhile."""
    slow = IdP(["k1"])
    slow.delay = 0.6
    main = app.state.authenticator
    app.state.authenticator = Authenticator(slow.config())
    try:
        slow_status: list[int] = []

        def call() -> None:
            with httpx.Client(base_url=http.base_url, timeout=10) as other:
                slow_status.append(other.get("/user", headers=bearer(slow.mint())).status_code)

        worker = threading.Thread(target=call)
        worker.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        assert http.get("/ping").status_code == 200
        assert time.monotonic() - t0 < 0.3
        worker.join(5)
        assert slow_status == [200]
    finally:
        app.state.authenticator = main
        slow.stop()
