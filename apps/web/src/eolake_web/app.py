"""The web view: a single-page app (index.html, vanilla JS modules, MapLibre and uPlot from npm) behind the kit.

Served at the platform's base URL, the gateway's catch-all: besides the page, its files, /config.json and the
operations console's admin-only proxy (/console/api/…, eolake_web.console), every other path is a problem+json
404 (a mistyped /stac-like path must not answer with HTML).
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Query, Request
from starlette.responses import FileResponse, JSONResponse, Response

from eolake_kit import __version__, install_kit
from eolake_kit.matomo import page_view_config
from eolake_web import assets, services
from eolake_web.console import install_console
from eolake_web.settings import WebSettings

# What the static route serves: nothing else leaves the directory (no .map, no .tmp, no dotfiles).
SUFFIXES = {".js", ".css", ".svg", ".png", ".json", ".txt", ""}
NO_STORE_HTML = "no-cache"


def build_id(static: Path, vendor: Path) -> str:
    """A digest of every served file: part of the static URLs, so that they can be cached for a year. The npm
    libraries' part is the one `eolake_web.assets` recorded when it wrote them (50 MB, read at every start else)."""
    own = assets.digest(static, skip=vendor if vendor.is_relative_to(static) else None)
    return hashlib.sha256(f"{own} {assets.recorded_digest(vendor)}".encode()).hexdigest()[:12]


def content_security_policy(matomo: dict | None, oidc: dict | None = None) -> str:
    connect = "'self'"
    # The page itself talks to Matomo's tracker and the OIDC issuer (discovery, token endpoint); nothing else.
    for url in [matomo and matomo["tracker_url"], oidc and oidc["issuer"]]:
        if url:
            parts = urlsplit(url)
            connect += f" {parts.scheme}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src {connect}",
            "img-src 'self' data: blob:",
            "worker-src 'self'",
            "font-src 'self'",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def sign_in_config(settings: WebSettings) -> dict | None:
    """What the page needs to sign users in at the platform's OIDC issuer (None: API keys only)."""
    if not settings.auth.oidc_issuer:
        return None
    return {"issuer": settings.auth.oidc_issuer.rstrip("/"), "client_id": settings.oidc_client_id, "scope": "openid"}


def create_app(settings: WebSettings | None = None) -> FastAPI:
    settings = settings or WebSettings()
    static, vendor = settings.static_path.resolve(), settings.vendor_path.resolve()
    build = build_id(static, vendor)
    matomo = page_view_config(settings)
    oidc = sign_in_config(settings)
    csp = content_security_policy(matomo, oidc)
    page_headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": NO_STORE_HTML,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }
    template = (static / "index.html").read_text(encoding="utf-8")
    page = template.replace("{{STATIC}}", f"/static/{build}").replace("{{TITLE}}", settings.title)
    services_by_name = {"web": "", **settings.services}
    config = {
        "title": settings.title,
        "build": build,
        "static": f"/static/{build}",
        # Same origin: the page reaches every service through the gateway it was loaded from.
        "services": services_by_name,
        "matomo": matomo,
        "oidc": oidc,
        # What the operations console (admins) can draw: the observers the target deployed.
        "observers": sorted(settings.observers),
    }

    app = FastAPI(
        title="eolake web view",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        root_path=settings.root_path,
    )

    install_console(app, settings.observers)

    @app.get("/", include_in_schema=False)
    @app.get("/index.html", include_in_schema=False)
    async def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=page_headers)

    @app.get("/config.json", include_in_schema=False)
    async def config_json() -> Response:
        return JSONResponse(config, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    @app.get("/services.json", include_in_schema=False)
    async def services_json(q: str | None = Query(None, max_length=200)) -> Response:
        return JSONResponse(
            services.catalog(services_by_name, q),
            media_type="application/geo+json",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    @app.get("/static/{version}/{path:path}", include_in_schema=False)
    async def static_file(version: str, path: str, request: Request) -> Response:
        base, rel = (vendor, path.removeprefix("vendor/")) if path.startswith("vendor/") else (static, path)
        target = (base / rel).resolve()
        if (
            not target.is_relative_to(base)
            or not target.is_file()
            or target.suffix not in SUFFIXES
            or any(part.startswith(".") for part in Path(rel).parts)
            or target.name == "index.html"
        ):
            raise HTTPException(404, f"no static file {path}")
        # An old page (another build) still gets the file, just not for a year.
        cache = f"public, max-age={settings.static_max_age}, immutable" if version == build else "no-cache"
        headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
        if target.suffix == ".js":
            media = "text/javascript; charset=utf-8"
        else:
            media = mimetypes.guess_type(target.name)[0] or "text/plain"
        response = FileResponse(target, media_type=media, headers=headers, stat_result=target.stat())
        etag = response.headers.get("etag")
        if etag and etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={**headers, "ETag": etag})
        return response

    async def front_end_assets() -> None:
        assets.check(vendor)

    return install_kit(app, settings, checks={"assets": front_end_assets})
