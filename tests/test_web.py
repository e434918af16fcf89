"""The web view's server: the page, its configuration and files, cache headers, CSP, and 404s for the rest."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from eolake_web import assets
from eolake_web.app import build_id, create_app
from eolake_web.settings import WebSettings, default_services
from fastapi.testclient import TestClient
from pydantic import ValidationError

from servers import service_process, wait_until

PACKAGE_STATIC = Path(assets.__file__).parent / "static"


@pytest.fixture(scope="module")
def vendor(tmp_path_factory) -> Path:
    """Vendor files: the real ones when the bootstrap built them, else stand-ins (the browser tests use the real)."""
    real = PACKAGE_STATIC / "vendor"
    try:
        assets.check(real)
        return real
    except FileNotFoundError:
        fake = tmp_path_factory.mktemp("vendor")
        for name in assets.expected_files():
            (fake / name).parent.mkdir(parents=True, exist_ok=True)
            (fake / name).write_text("/* stand-in */\n")
        return fake


@pytest.fixture(scope="module")
def client(vendor) -> TestClient:
    with TestClient(create_app(WebSettings(vendor_dir=vendor))) as c:
        yield c


def static_urls(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)


def assert_problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["detail"] and body["title"]
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


def test_index_is_the_page_with_a_strict_csp(client):
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    csp = dict(part.strip().split(" ", 1) for part in resp.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert "http" not in resp.headers["content-security-policy"], "no external origin without Matomo"
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["x-content-type-options"] == "nosniff"
    html = resp.text
    assert "<main" in html and "<nav" in html and 'lang="en"' in html
    assert "{{" not in html, "template placeholders left in the page"
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>\s*\S", html), "no inline script (CSP)"
    assert not re.search(r"https?://", html), "the page loads nothing from another origin"
    assert client.get("/index.html").text == html


def test_every_file_the_page_loads_is_served_and_cached_for_a_year(client):
    html = client.get("/").text
    urls = static_urls(html)
    assert len(urls) >= 6
    assert any("maplibre-gl-csp.js" in u for u in urls) and any("uPlot" in u for u in urls)
    assert any(u.endswith("/js/main.js") for u in urls)
    for url in urls:
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert resp.headers["cache-control"] == "public, max-age=31536000, immutable", url
        assert resp.headers["etag"], url
        assert resp.headers["x-content-type-options"] == "nosniff"
        if url.endswith(".js"):
            assert resp.headers["content-type"].startswith("text/javascript")
        if url.endswith(".css"):
            assert resp.headers["content-type"].startswith("text/css")
        again = client.get(url, headers={"If-None-Match": resp.headers["etag"]})
        assert again.status_code == 304 and not again.content


def test_every_module_reached_from_main_is_served(client):
    """main.js routes to one module per page, and they import what they share: every module of that graph is served
    (and each page's module is among them)."""
    build = client.get("/config.json").json()["build"]
    seen, todo = set(), ["main.js"]
    while todo:
        module = todo.pop()
        seen.add(module)
        resp = client.get(f"/static/{build}/js/{module}")
        assert resp.status_code == 200, module
        todo += [m for m in re.findall(r"from '\./([a-z-]+\.js)'", resp.text) if m not in seen]
    pages = {"search.js", "collection.js", "item.js", "hydrology.js", "services.js", "orders.js", "console.js"}
    assert pages | {"common.js", "retrieval.js"} <= seen


COUNTS = [
    # (first, shown, numberMatched, a next page?[, an estimate?]) -> what the status line says
    ((1, 0, None, False), "No collections."),
    ((1, 1, None, False), "1 collection."),
    ((1, 12, 12, False), "12 collections."),
    ((1, 50, 390, True), "Collections 1–50 of 390."),
    ((51, 50, 390, True), "Collections 51–100 of 390."),
    ((1, 100, None, True), "Collections 1–100 of more than 100."),  # no total given: none guessed
    ((101, 4, None, False), "Collections 101–104 of 104."),  # the last page: the total is known
    ((1, 20, 7, True), "Collections 1–20 of more than 20."),  # a total below what was shown is not believed
    ((1, 50, 390, False), "Collections 1–50 of 390."),
    ((1, 50, 4000, True, True), "Collections 1–50 of about 4000."),  # the planner's estimate, said so
    ((4001, 7, 4000, False, True), "Collections 4001–4007 of 4007."),  # the last page: counted, not estimated
]


@pytest.mark.skipif(not shutil.which("node"), reason="needs node (the bootstrap installs it for npm)")
def test_result_counts_never_state_a_total_the_service_did_not_give():
    cases = [
        {"first": f, "shown": s, "matched": m, "more": more, "estimated": bool(estimated)}
        for (f, s, m, more, *estimated), _ in COUNTS
    ]
    script = (
        f"import {{ countText }} from '{(PACKAGE_STATIC / 'js' / 'paging.js').as_uri()}';"
        f"console.log(JSON.stringify({json.dumps(cases)}.map((c) => countText('collection', c))));"
    )
    result = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [text for _, text in COUNTS]


def test_another_build_is_served_without_long_caching(client):
    resp = client.get("/static/0123456789ab/css/app.css")
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-cache"


def test_config_names_the_services_and_no_matomo_by_default(client):
    resp = client.get("/config.json")
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-cache"
    config = resp.json()
    assert config["services"] == {"web": "", **default_services()}
    assert config["matomo"] is None
    assert config["static"] == f"/static/{config['build']}"


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/stac-typo/collections",
        "/api/v1/items",
        "/static/x",
        "/static/abc/../../settings.py",
        "/static/abc/%2e%2e/%2e%2e/app.py",
        "/static/abc/index.html",
        "/static/abc/js/missing.js",
        "/static/abc/vendor/manifest.json.tmp",
        "/favicon.ico",
        "/collections",
        "/config.json/x",
    ],
)
def test_unknown_paths_are_problem_404s(client, path):
    assert_problem(client.get(path), 404)


def test_no_html_for_unknown_paths_even_when_a_browser_asks(client):
    resp = client.get("/search/unknown", headers={"Accept": "text/html"})
    assert_problem(resp, 404)


def test_wrong_method_is_a_problem(client):
    assert_problem(client.post("/", content=b"x"), 405)


def test_readiness_reports_missing_front_end_assets(tmp_path):
    with TestClient(create_app(WebSettings(vendor_dir=tmp_path / "empty"))) as c:
        assert c.get("/healthz").status_code == 200
        body = assert_problem(c.get("/readyz"), 503)
        assert body["checks"]["assets"]["status"] == "down"
        assert "npm ci" in body["checks"]["assets"]["error"]
        assert c.get("/").status_code == 200, "the page itself is still served"


def test_matomo_page_tracking_when_configured(vendor):
    settings = WebSettings(vendor_dir=vendor, matomo_url="https://stats.example.org/", matomo_site_id=7)
    with TestClient(create_app(settings)) as c:
        assert c.get("/config.json").json()["matomo"] == {
            "tracker_url": "https://stats.example.org/matomo.php",
            "site_id": 7,
        }
        csp = c.get("/").headers["content-security-policy"]
        assert "connect-src 'self' https://stats.example.org" in csp
        assert "script-src 'self';" in csp, "the tracker is our code: no script from Matomo's origin"


def test_services_come_from_the_setting(vendor, monkeypatch):
    monkeypatch.setenv("EOLAKE_WEB_SERVICES", json.dumps({"catalog": "/stac", "tiles": "/maps"}))
    with TestClient(create_app(WebSettings(vendor_dir=vendor))) as c:
        assert c.get("/config.json").json()["services"] == {"web": "", "catalog": "/stac", "tiles": "/maps"}


@pytest.mark.parametrize(
    "services,reason",
    [
        ({"catalog": "http://evil.example.org/stac"}, "path prefix"),
        ({"catalog": "/"}, "path prefix"),
        ({"catalog": "/stac/"}, "path prefix"),
        ({"tiles": "/tiles"}, "catalog"),
        ({"Catalog!": "/stac", "catalog": "/stac"}, "service name"),
    ],
)
def test_impossible_services_are_rejected(services, reason):
    with pytest.raises(ValidationError, match=reason):
        WebSettings(services=services)


def test_root_path_must_be_the_base_url():
    with pytest.raises(ValidationError, match="root_path"):
        WebSettings(root_path="/web")


def test_assets_build_copies_from_node_modules_and_names_what_is_missing(tmp_path):
    modules = tmp_path / "node_modules"
    with pytest.raises(FileNotFoundError, match="npm ci"):
        assets.build(modules, tmp_path / "out")
    for package, names in assets.FILES.items():
        (modules / package).mkdir(parents=True)
        (modules / package / "package.json").write_text(json.dumps({"version": "9.9.9"}))
        for name in names:
            (modules / package / name).parent.mkdir(parents=True, exist_ok=True)
            (modules / package / name).write_text(name)
    with pytest.raises(FileNotFoundError, match="map.geo.json"):
        assets.build(modules, tmp_path / "out")
    garonne = [[[1.40, 43.60], [1.45, 43.60], [1.45, 43.62], [1.40, 43.60]]]
    loire = [[[-1.55, 47.21], [-1.50, 47.21], [-1.50, 47.22], [-1.55, 47.21]]]
    for package in assets.WATER.values():
        (modules / package).mkdir(parents=True)
        (modules / package / "package.json").write_text(json.dumps({"version": "0.6.0"}))
        (modules / package / "LICENSE").write_text("MIT")
        (modules / package / "map.geo.json").write_text(
            json.dumps(
                {
                    "type": "GeometryCollection",
                    "geometries": [{"type": "MultiPolygon", "coordinates": [garonne, loire]}],
                }
            )
        )
    versions = assets.build(modules, tmp_path / "out")
    assert versions == {**{p: "9.9.9" for p in assets.FILES}, **{p: "0.6.0" for p in assets.WATER.values()}}
    assets.check(tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.tmp"))
    basemap = tmp_path / "out" / assets.BASEMAP
    index = json.loads((basemap / "index.json").read_text())
    toulouse, nantes = assets.cell_of(1.4, 43.6), assets.cell_of(-1.55, 47.21)
    assert index["layers"]["rivers"] == sorted([toulouse, nantes]) and toulouse != nantes
    cell = json.loads((basemap / "rivers" / f"{toulouse}.json").read_text())
    assert cell["geometry"]["coordinates"] == [garonne]
    # The build id: the page's own files read at start, the libraries' digest recorded by the build.
    out, static = tmp_path / "out", tmp_path / "static"
    assert json.loads((out / assets.MANIFEST).read_text())["digest"] == assets.digest(out)
    (static / "js").mkdir(parents=True)
    (static / "js" / "app.js").write_text("one")
    first = build_id(static, out)
    (modules / "marked" / "lib" / "marked.umd.js").write_text("another release")
    assets.build(modules, out)
    rebuilt = build_id(static, out)
    (static / "js" / "app.js").write_text("two")
    assert len({first, rebuilt, build_id(static, out)}) == 3


def test_lockfile_pins_the_libraries_the_build_copies():
    app_dir = assets.APP_DIR
    lock = json.loads((app_dir / "package-lock.json").read_text())
    for package in [*assets.FILES, *assets.WATER.values()]:
        entry = lock["packages"][f"node_modules/{package}"]
        assert entry["version"] and entry["integrity"].startswith("sha512-"), package


def test_served_as_a_process_behind_its_settings(tmp_path, vendor):
    env = {"EOLAKE_WEB_VENDOR_DIR": str(vendor), "EOLAKE_WEB_SERVICES": json.dumps({"catalog": "/stac"})}
    with service_process("eolake_web", env, tmp_path / "web.log", probe="/readyz") as url:
        assert wait_until(lambda: httpx.get(url + "/readyz").status_code == 200)
        assert "text/html" in httpx.get(url + "/").headers["content-type"]
        assert httpx.get(url + "/config.json").json()["services"] == {"web": "", "catalog": "/stac"}


def test_static_dir_is_self_contained():
    # The committed app files the page needs (vendor/ is built): nothing refers to a CDN.
    for path in (PACKAGE_STATIC / "js").glob("*.js"):
        text = path.read_text()
        assert not re.search(r"https?://(?!registry)", text), f"{path.name} refers to another origin"


# ------------------------------------------------------------------------------------ offline API documentation


def test_every_services_docs_page_loads_swagger_ui_from_the_web_view(client):
    """A kit service's docs page (here at a prefix) references only the web view's files, all of which it serves."""
    from fastapi import FastAPI

    from eolake_kit import ServiceSettings, install_kit
    from eolake_kit.docs import ASSETS

    service = install_kit(
        FastAPI(title="eolake <test>", openapi_url="/api", docs_url="/api.html"), ServiceSettings(root_path="/svc")
    )
    with TestClient(service, root_path="/svc") as svc:
        page = svc.get("/api.html")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
        assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'" and csp["default-src"] == "'none'"
        assert "<script>" not in page.text and "http" not in page.text  # no inline script, no other origin
        assert 'data-openapi="/svc/api"' in page.text and "eolake &lt;test&gt;" in page.text
        assert svc.get("/api").json()["info"]["title"] == "eolake <test>"
        assert svc.get("/redoc").status_code == 404 and svc.get("/docs/oauth2-redirect").status_code == 404
        assert service.url_path_for("swagger_ui_html") == "/api.html"  # stac-fastapi's landing page links it
    urls = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert {u.rsplit("/", 1)[-1] for u in urls} >= {"swagger-ui-bundle.js", "swagger-ui.css", "api-docs.js"}
    for url in urls:
        assert url.startswith(ASSETS + "/")
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert resp.headers["cache-control"] == "no-cache"  # not the current build: revalidated, not kept a year


def test_docs_page_may_read_the_oidc_issuers_discovery_and_nothing_else():
    """The description names the issuer's discovery document (openIdConnectUrl) and Swagger UI reads it: the page's
    policy lets it connect there (the issuer's origin), still to no other origin."""
    from fastapi import FastAPI

    from eolake_kit import ServiceSettings, install_kit
    from eolake_kit.auth import AuthConfig

    issuer = "https://id.example.org:8443/realms/eo"
    service = install_kit(
        FastAPI(openapi_url="/api", docs_url="/api.html"),
        ServiceSettings(auth=AuthConfig(oidc_issuer=issuer, oidc_audience="eolake")),
    )
    with TestClient(service) as svc:
        csp = dict(
            part.strip().split(" ", 1) for part in svc.get("/api.html").headers["content-security-policy"].split(";")
        )
        described = svc.get("/api").json()["components"]["securitySchemes"]["oidc"]["openIdConnectUrl"]
    assert described == issuer + "/.well-known/openid-configuration"
    assert csp["connect-src"] == "'self' https://id.example.org:8443" and csp["default-src"] == "'none'"


def test_a_service_without_docs_gets_none(client):
    from fastapi import FastAPI

    from eolake_kit import ServiceSettings, install_kit

    service = install_kit(FastAPI(docs_url=None, redoc_url=None), ServiceSettings())
    with TestClient(service) as svc:
        assert svc.get("/docs").status_code == 404 and svc.get("/redoc").status_code == 404


# ------------------------------------------------------------------------------------------- services catalog


def test_services_catalog_has_a_record_per_service(client):
    from eolake_spec import manifests

    body = client.get("/services.json").json()
    records = {r["id"]: r for r in body["features"]}
    assert sorted(records) == sorted(["web", *default_services()])
    assert body["numberMatched"] == body["numberReturned"] == len(records)
    for name, record in records.items():
        assert record["properties"]["title"] == manifests()[name].title
        assert record["properties"]["description"] == manifests()[name].summary
        rels = {link["rel"]: link["href"] for link in record["links"]}
        assert rels["status"] == record["properties"]["endpoint"].rstrip("/") + "/readyz"
        assert "service" not in rels  # a service's root may be a bare 404: never linked
    tiles = client.get("/services.json", params={"q": "TILES"}).json()
    assert [r["id"] for r in tiles["features"]] == ["tiles"] and tiles["numberMatched"] == 1
    assert client.get("/services.json", params={"q": "no such service"}).json()["features"] == []
    assert_problem(client.get("/services.json", params={"q": "x" * 201}), 400)


def test_readiness_names_the_services_self_description():
    from fastapi import FastAPI

    from eolake_kit import ServiceSettings, install_kit

    app = FastAPI(openapi_url="/api", docs_url="/api.html")

    @app.get("/conformance")
    async def conformance() -> dict:
        return {"conformsTo": []}

    install_kit(app, ServiceSettings(root_path="/svc"))
    with TestClient(app, root_path="/svc") as svc:
        links = {link["rel"]: link["href"] for link in svc.get("/readyz").json()["links"]}
    assert links == {"service-desc": "/svc/api", "service-doc": "/svc/api.html", "conformance": "/svc/conformance"}
    bare = install_kit(FastAPI(openapi_url=None), ServiceSettings())
    with TestClient(bare) as svc:
        assert svc.get("/readyz").json()["links"] == []
    broken = install_kit(FastAPI(), ServiceSettings())

    def no_description() -> dict:
        raise ValueError("a schema that does not build")

    broken.openapi = no_description
    with TestClient(broken) as svc:  # still ready: only the conformance link is missing
        ready = svc.get("/readyz")
        assert ready.status_code == 200 and [link["rel"] for link in ready.json()["links"]] == [
            "service-desc",
            "service-doc",
        ]


def test_sign_in_settings_reach_the_page_and_its_csp(vendor):
    from eolake_kit.auth import AuthConfig

    plain = TestClient(create_app(WebSettings(vendor_dir=vendor)))
    assert plain.get("/config.json").json()["oidc"] is None
    settings = WebSettings(
        vendor_dir=vendor,
        oidc_client_id="portal",
        auth=AuthConfig(oidc_issuer="https://id.example.org/realms/eo/", oidc_audience="eolake"),
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/config.json").json()["oidc"] == {
            "issuer": "https://id.example.org/realms/eo",
            "client_id": "portal",
            "scope": "openid",
        }
        csp = dict(part.strip().split(" ", 1) for part in c.get("/").headers["content-security-policy"].split(";"))
        assert csp["connect-src"] == "'self' https://id.example.org"
    with pytest.raises(ValidationError):
        WebSettings(oidc_client_id="bad id with spaces")
