"""The Python client's credentials and errors against a real HTTP server on loopback (no mocks)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
from eolake_client import Client, ClientCredentials, Forbidden, NotFound, QuotaExceeded, Unauthorized
from fastapi import FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse

from eolake.embedded.postgres import free_port
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
        return JSONResponse(
            {"type": "about:blank", "title": "x", "status": status, "detail": detail, **extra},
            status,
            media_type="application/problem+json",
            headers=extra.pop("headers", None),
        )

    @app.get("/downloads/orders/{oid}")
    async def get_order(oid: str, authorization: str | None = Header(None)):
        tok = (authorization or "").removeprefix("Bearer ")
        if tok not in issued or tok in state["revoked"]:
            return problem(401, "token expired")
        if oid == "forbidden":
            return problem(403, "requires role 'user'")
        if oid == "quota":
            return JSONResponse(
                {
                    "status": 429,
                    "detail": "quota 'concurrent orders' exceeded",
                    "limit": "concurrent-orders",
                    "reset": "2030-01-01T00:00:00Z",
                },
                429,
                media_type="application/problem+json",
                headers={"Retry-After": "12"},
            )
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


# ---------------------------------------------------------------------------------------------- the command line
# Every error a user can meet is one line on stderr with an exit code, never a traceback (a real process each time).


def cli(*args: str, url: str | None = None, **popen) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOLAKE_")}
    if url:
        env["EOLAKE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "eolake_client.cli", *args], env=env, capture_output=True, text=True, timeout=60, **popen
    )


def one_line_error(run: subprocess.CompletedProcess, code: int) -> str:
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("eolake-client"), run.stderr
    return lines[0]


@pytest.fixture(scope="module")
def stac_server():
    """A STAC landing page whose search refuses with problem+json, orders (one with many files), and an HTML page
    where JSON is expected."""
    app = FastAPI()
    many = {
        "id": "big",
        "status": "succeeded",
        "progress": {"done": 5000, "files": 5000, "bytes": 1},
        "files": [{"state": "ready", "name": f"file-{i:05}.tif", "size": 1} for i in range(5000)],
    }

    @app.get("/stac")
    async def landing(request: Request):
        base = str(request.base_url).rstrip("/")
        return {
            "type": "Catalog",
            "id": "t",
            "description": "t",
            "stac_version": "1.0.0",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [
                {"rel": "self", "href": f"{base}/stac"},
                {"rel": "root", "href": f"{base}/stac"},
                *[
                    {"rel": "search", "href": f"{base}/stac/search", "type": "application/geo+json", "method": method}
                    for method in ("GET", "POST")
                ],
            ],
        }

    @app.api_route("/stac/search", methods=["GET", "POST"])
    async def search():
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Bad Request",
                "status": 400,
                "detail": "collections: unknown\ncollection 'nope'",
            },
            400,
            media_type="application/problem+json",
        )

    @app.get("/downloads/orders")
    async def orders():
        return {"orders": [many], "links": []}

    @app.get("/downloads/orders/{oid}")
    async def order(oid: str):
        if oid == "html":
            return HTMLResponse("<html><body>a proxy's page</body></html>")
        return JSONResponse(
            {"type": "about:blank", "title": "Not Found", "status": 404, "detail": f"no order {oid}"},
            404,
            media_type="application/problem+json",
        )

    with served(app) as url:
        yield url


def test_cli_version_is_the_installed_one():
    import importlib.metadata

    run = cli("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"eolake-client {importlib.metadata.version('eolake-client')}"


@pytest.mark.parametrize("command", [["status"], ["search", "--collections", "x"], ["status", "abc"]])
def test_cli_unreachable_server_is_one_line_after_bounded_retries(command):
    nobody = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(cli("--retries", "1", *command, url=nobody), 4)
    assert f"cannot reach {nobody}/" in line and "Connection refused" in line and "after 2 attempts" in line
    line = one_line_error(cli("--retries", "0", *command, url=nobody), 4)
    assert "attempts" not in line


def test_cli_unknown_host_names_the_cause():
    line = one_line_error(cli("--retries", "0", "status", url="http://no-such-host.invalid"), 4)
    assert "no-such-host.invalid" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["search", "--bbox", "1,2"], "expected four numbers"),
        (["search", "--bbox", "1,2,3,x"], "expected four numbers"),
        (["search", "--bbox", "1,50,2,40"], "SOUTH not above NORTH"),
        (["search", "--bbox", "1,2,3,nan"], "expected four numbers"),
        (["search", "--datetime", "2023-13-45"], "expected a date"),
        (["search", "--datetime", "yesterday"], "expected a date"),
        (["search", "--datetime", "2023-06-01/2023-01-01"], "start is after the end"),
        (["search", "--datetime", "a/b/c"], "expected a date"),
        (["search", "--limit", "0"], "at least 1"),
        (["order", "not-a-ref"], "COLLECTION/ITEM"),
        (["--retries", "99", "status"], "--retries"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_bad_arguments_are_one_line(args, says):
    # No server is needed: arguments are checked before anything is sent.
    assert says in one_line_error(cli(*args, url="http://127.0.0.1:9"), 2)


@pytest.mark.parametrize(
    "good",
    [
        "2023-01-01",
        "2023",
        "2023-01",
        "2023-01-01T10:00:00Z",
        "2023-01-01/..",
        "../2023-06-30",
        "2023-01-01T00:00:00+02:00/2023-02-01",
    ],
)
def test_cli_good_datetimes_pass(good):
    from eolake_client.cli import datetime_arg

    assert datetime_arg(good) == good


def test_cli_problem_details_are_one_line(stac_server):
    line = one_line_error(cli("status", "nope", url=stac_server), 2)
    assert line == "eolake-client: 404 Not Found: no order nope"
    line = one_line_error(cli("search", "--collections", "nope", url=stac_server), 2)
    assert line == "eolake-client: 400 Bad Request: collections: unknown collection 'nope'"


def test_cli_html_where_json_is_expected_says_so(stac_server):
    line = one_line_error(cli("status", "html", url=stac_server), 2)
    assert "did not answer JSON" in line and "base URL" in line


def test_cli_broken_pipe_is_silent(stac_server):
    # `eolake-client status | head -1`: the reader goes away after one line of ~5000.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EOLAKE_")}, "EOLAKE_URL": stac_server}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eolake_client.cli", "status"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().startswith("big  succeeded")
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""
