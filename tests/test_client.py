"""The Python client's credentials and errors against a real HTTP server on loopback (no mocks)."""

from __future__ import annotations

import itertools

import pytest
from eolake_client import Client, ClientCredentials, Forbidden, NotFound, QuotaExceeded, Unauthorized
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from servers import served


@pytest.fixture(scope="module")
def server():
    app = FastAPI()
    issued: list[str] = []
    counter = itertools.count()
    state = {"revoked": set()}

    @app.post("/token")
    async def token(request: Request):
        from urllib.parse import parse_qs

        grant_type = parse_qs((await request.body()).decode()).get("grant_type", [""])[0]
        auth = request.headers.get("authorization", "")
        if grant_type != "client_credentials" or not auth.startswith("Basic "):
            return JSONResponse({"error": "invalid_request"}, 400)
        import base64

        cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if (cid, secret) != ("robot", "s3cret"):
            return JSONResponse({"error": "invalid_client", "error_description": "bad secret"}, 401)
        tok = f"tok-{next(counter)}"
        issued.append(tok)
        return {"access_token": tok, "token_type": "Bearer", "expires_in": 31}  # 1 s after the 30 s margin

    def problem(status, detail, **extra):
        return JSONResponse({"type": "about:blank", "title": "x", "status": status, "detail": detail, **extra},
                            status, media_type="application/problem+json", headers=extra.pop("headers", None))

    @app.get("/downloads/orders/{oid}")
    async def get_order(oid: str, authorization: str | None = Header(None)):
        tok = (authorization or "").removeprefix("Bearer ")
        if tok not in issued or tok in state["revoked"]:
            return problem(401, "token expired")
        if oid == "forbidden":
            return problem(403, "requires role 'user'")
        if oid == "quota":
            return JSONResponse({"status": 429, "detail": "quota 'concurrent orders' exceeded",
                                 "limit": "concurrent-orders", "reset": "2030-01-01T00:00:00Z"}, 429,
                                media_type="application/problem+json", headers={"Retry-After": "12"})
        if oid != "mine":
            return problem(404, "no such order")
        return {"id": oid, "status": "ordered", "token": tok}

    with served(app) as url:
        yield url, issued, state


def test_client_credentials_fetch_refresh_and_errors(server):
    url, issued, state = server
    creds = ClientCredentials(url + "/token", "robot", "s3cret")
    c = Client(url, credentials=creds, backoff=0.01)
    first = c.status("mine")["token"]
    assert c.status("mine")["token"] == first  # cached
    creds._expires = 0  # as if the token were about to expire: fetched again before use
    assert c.status("mine")["token"] != first
    state["revoked"].add(issued[-1])  # revoked server-side: one 401, a fresh token, success
    assert c.status("mine")["token"] == issued[-1] and len(issued) == 3
    with pytest.raises(NotFound) as e:
        c.status("someone-else")
    assert e.value.status == 404 and e.value.detail == "no such order"
    with pytest.raises(Forbidden):
        c.status("forbidden")
    with pytest.raises(QuotaExceeded) as q:
        c.status("quota")
    assert q.value.limit == "concurrent-orders" and q.value.retry_after == 12 and q.value.reset
    with pytest.raises(Unauthorized) as u:
        Client(url, credentials=ClientCredentials(url + "/token", "robot", "wrong")).status("mine")
    assert "bad secret" in str(u.value)
    with pytest.raises(Unauthorized):
        Client(url, token="forged").status("mine")


def test_client_package_does_not_need_the_server():
    import importlib.metadata

    requires = importlib.metadata.requires("eolake-client") or []
    assert not [r for r in requires if r.startswith(("eolake-kit", "fastapi", "procrastinate", "psycopg"))]
