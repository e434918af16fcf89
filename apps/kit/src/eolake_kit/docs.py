"""Every service's OpenAPI documentation page, offline: Swagger UI from the platform's own origin, never a CDN.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so they are blank without the internet and need a
relaxed Content-Security-Policy. The web view serves Swagger UI (the npm package swagger-ui-dist, pinned by its
package-lock.json) and the script that starts it at /static/api-docs/ of the same origin (the web view is the base
URL's catch-all on every target); this module replaces the framework's pages with one that loads them from there,
under a strict policy: no inline script or style, nothing from another origin. ReDoc's page goes (one viewer).
"""

from __future__ import annotations

import logging
from html import escape
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

# The web view's static files (eolake_web.app): its URLs are /static/<build>/<file>, and a segment that is not the
# current build is still served, revalidated on each use instead of cached for a year.
ASSETS = "/static/api-docs"
logger = logging.getLogger(__name__)


def content_security_policy(oidc_issuer: str | None = None) -> str:
    """Nothing from another origin, except the OIDC issuer's discovery document: the description names it
    (openIdConnectUrl) and Swagger UI reads it to offer signing in."""
    connect = "'self'"
    if oidc_issuer:
        parts = urlsplit(oidc_issuer)
        connect += f" {parts.scheme}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def docs_page(title: str, openapi_url: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{escape(title)} · API</title>
  <link rel="icon" href="{ASSETS}/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="{ASSETS}/vendor/swagger-ui-dist/swagger-ui.css">
  <link rel="stylesheet" href="{ASSETS}/css/api-docs.css">
</head>
<body>
  <p class="eolake-docs-home"><a href="/">Web view</a> · <a href="/#/services">all services</a> · {escape(title)}</p>
  <div id="swagger-ui" data-openapi="{escape(openapi_url)}"><p>Loading the API description…</p></div>
  <noscript><p>This page needs JavaScript; the description itself is at <a href="{escape(openapi_url)}">{
        escape(openapi_url)
    }</a>.</p></noscript>
  <script src="{ASSETS}/vendor/swagger-ui-dist/swagger-ui-bundle.js" defer></script>
  <script src="{ASSETS}/js/api-docs.js" defer></script>
</body>
</html>
"""


def api_links(app: FastAPI) -> list[dict[str, str]]:
    """The service's self-description, paths relative to its prefix (STAC/OGC link relations); worked out on first
    use, once every route is in place (routers included later count too)."""
    if getattr(app.state, "api_links", None) is None:
        links: list[dict[str, str]] = []
        if app.openapi_url:
            links.append(
                {"rel": "service-desc", "href": app.openapi_url, "type": "application/vnd.oai.openapi+json;version=3.1"}
            )
            if app.docs_url:
                links.append({"rel": "service-doc", "href": app.docs_url, "type": "text/html"})
            if "/conformance" in _documented_paths(app):
                links.append({"rel": "conformance", "href": "/conformance", "type": "application/json"})
        app.state.api_links = links
    links = app.state.api_links
    return links


def _documented_paths(app: FastAPI) -> dict[str, object]:
    try:
        paths: dict[str, object] = app.openapi().get("paths", {})
        return paths
    except Exception:  # a description that does not build must not make the service unready: no link, that's all
        logger.warning("the OpenAPI description of %s does not build", app.title, exc_info=True)
        return {}


def install_offline_docs(app: FastAPI, oidc_issuer: str | None = None) -> None:
    """Serve the documentation page at the app's docs_url (when it has one) and drop ReDoc and the CDN pages."""
    app.state.api_links = None
    framework_pages = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
    app.router.routes[:] = [r for r in app.router.routes if not (isinstance(r, Route) and r.path in framework_pages)]
    if not (app.openapi_url and app.docs_url):
        return
    title, openapi_path, csp = app.title, app.openapi_url, content_security_policy(oidc_issuer)

    async def documentation(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(
            docs_page(title, root + openapi_path),
            headers={
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-cache",
                "Referrer-Policy": "same-origin",
            },
        )

    # FastAPI's name for its page: stac-fastapi's landing page links it with url_for("swagger_ui_html").
    app.add_route(app.docs_url, documentation, include_in_schema=False, name="swagger_ui_html")
    app.redoc_url = app.swagger_ui_oauth2_redirect_url = None
