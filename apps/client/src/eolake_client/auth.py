"""Credentials: an API key (service accounts), a fixed bearer token, or OAuth2 client credentials with refresh."""

from __future__ import annotations

import threading
import time

import httpx

from eolake_client.errors import Unauthorized, Unreachable, raise_for_problem, transport_reason


class ApiKey(httpx.Auth):
    def __init__(self, key: str):
        self.key = key

    def auth_flow(self, request):
        request.headers["X-API-Key"] = self.key
        yield request


class BearerToken(httpx.Auth):
    def __init__(self, token: str):
        self.token = token

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class ClientCredentials(httpx.Auth):
    """OAuth2 client-credentials grant (RFC 6749 §4.4) against `token_url` (e.g. Keycloak's
    …/protocol/openid-connect/token). The token is cached and fetched again `margin` seconds before it expires,
    and once more when the server still answers 401 (revoked or clock skew)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        margin: float = 30.0,
        timeout: float = 10.0,
    ):
        self.token_url, self.client_id, self.client_secret, self.scope = token_url, client_id, client_secret, scope
        self.margin, self.timeout = margin, timeout
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or time.monotonic() > self._expires - self.margin:
                data = {"grant_type": "client_credentials"}
                if self.scope:
                    data["scope"] = self.scope
                try:
                    resp = httpx.post(
                        self.token_url, data=data, auth=(self.client_id, self.client_secret), timeout=self.timeout
                    )
                except httpx.TransportError as exc:
                    raise Unreachable(self.token_url, transport_reason(exc)) from exc
                if resp.status_code in (400, 401):
                    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
                    why = body.get("error_description") or body.get("error") or resp.text[:200]
                    raise Unauthorized(401, f"token endpoint refused the client: {why}", body, self.token_url)
                raise_for_problem(resp)
                body = resp.json()
                self._token = body["access_token"]
                self._expires = time.monotonic() + float(body.get("expires_in", 300))
            return self._token

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token(force=True)}"
            yield request
