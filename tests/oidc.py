"""Identity providers on loopback: a JWKS whose keys the tests can rotate (IdP) and an OpenID Connect provider for
the authorization code flow with PKCE (CodeFlowIssuer), the web view's sign-in."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from eolake_kit.auth import AuthConfig

AUDIENCE = "eolake"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEYS: dict[str, Any] = {"k1": _rsa(), "k2": _rsa(), "rogue": _rsa(), "ec1": ec.generate_private_key(ec.SECP256R1())}


def _jwk(kid: str) -> dict[str, Any]:
    pub = KEYS[kid].public_key()
    algo = jwt.algorithms.ECAlgorithm if kid.startswith("ec") else jwt.algorithms.RSAAlgorithm
    return {**algo.to_jwk(pub, as_dict=True), "kid": kid, "use": "sig"}


class IdP:
    """A loopback OIDC provider: discovery document plus a JWKS whose keys the test can swap."""

    def __init__(self, kids: list[str]):
        self.kids = list(kids)
        self.fetches = 0
        self.delay = 0.0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/jwks":
                    idp.fetches += 1
                    time.sleep(idp.delay)
                    body = {"keys": [_jwk(k) for k in idp.kids]}
                elif self.path == "/.well-known/openid-configuration":
                    body = {"issuer": idp.issuer, "jwks_uri": idp.jwks_url}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.jwks_url = self.issuer + "/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def config(self, **kw: Any) -> AuthConfig:
        base = dict(
            oidc_issuer=self.issuer,
            oidc_audience=AUDIENCE,
            oidc_jwks_url=self.jwks_url,
            jwks_refresh_cooldown_seconds=0,
        )
        return AuthConfig(**{**base, **kw})

    def mint(self, kid: str = "k1", realm_roles: tuple[str, ...] = ("user",), **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "realm_access": {"roles": list(realm_roles)},
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        signer = "rogue" if kid == "forged-k1" else kid
        kid = "k1" if kid == "forged-k1" else kid
        alg = "ES256" if kid.startswith("ec") else "RS256"
        return jwt.encode(payload, KEYS[signer], algorithm=alg, headers={"kid": kid})


class CodeFlowIssuer:
    """A small OpenID Connect provider on loopback for public clients: discovery, JWKS, an authorization endpoint
    with a login form, and a token endpoint for the authorization code grant with PKCE (S256 only).

    It checks what a real provider checks (RFC 6749, 7636; OIDC Core): a registered client and exact redirect URI
    (errors about either are shown, never redirected), `openid` in the scope, one-time codes that expire, the code
    verifier against its challenge. Users sign in by name (no password): `users` maps names to their roles.
    """

    CODE_SECONDS = 60

    def __init__(
        self,
        client_id: str,
        redirect_uris: list[str],
        users: dict[str, list[str]],
        audience: str = AUDIENCE,
        token_seconds: int = 3600,
        port: int = 0,
    ):
        self.client_id, self.redirect_uris, self.users = client_id, list(redirect_uris), users
        self.audience, self.token_seconds = audience, token_seconds
        self.key = _rsa()
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        # A key id per key (the RFC 7638 thumbprint's digest): services that cached another key fetch this one.
        self.kid = (
            base64.urlsafe_b64encode(
                hashlib.sha256(
                    json.dumps(
                        {k: public[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True
                    ).encode()
                ).digest()
            )
            .decode()
            .rstrip("=")
        )
        self.jwk = {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}
        self.codes: dict[str, dict[str, Any]] = {}
        self.issued: list[str] = []
        self.refused: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_OPTIONS(self) -> None:  # CORS preflight of a browser client
                self.send(
                    204,
                    b"",
                    "text/plain",
                    {
                        "Access-Control-Allow-Methods": "GET, POST",
                        "Access-Control-Allow-Headers": "Content-Type, Accept",
                    },
                )

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self.json(200, issuer.discovery())
                elif url.path == "/jwks":
                    self.json(200, {"keys": [issuer.jwk]})
                elif url.path == "/authorize":
                    issuer.authorize(self, _single(parse_qs(url.query)), submitted=False)
                else:
                    self.json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = _single(parse_qs(self.rfile.read(length).decode()))
                path = urlsplit(self.path).path
                if path == "/authorize":
                    issuer.authorize(self, form, submitted=True)
                elif path == "/token":
                    status, body = issuer.token(form)
                    self.json(status, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})
                else:
                    self.json(404, {"error": "not_found"})

            def json(self, status: int, body: dict, headers: dict | None = None) -> None:
                self.send(status, json.dumps(body).encode(), "application/json", headers)

            def send(self, status: int, data: bytes, media: str, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.jwks_url = self.issuer + "/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "profile"],
        }

    def authorize(self, handler: BaseHTTPRequestHandler, params: dict[str, str], submitted: bool) -> None:
        redirect = params.get("redirect_uri", "")
        if params.get("client_id") != self.client_id or redirect not in self.redirect_uris:
            # Never redirect to an address the client did not register (RFC 6749 4.1.2.1).
            self.refused.append("unknown client or redirect_uri")
            return handler.send(400, b"unknown client or redirect_uri", "text/plain")

        def back(**answer: str) -> None:
            if "error" in answer:
                self.refused.append(answer["error"])
            query = urlencode({**answer, **({"state": params["state"]} if params.get("state") else {})})
            handler.send(302, b"", "text/plain", {"Location": f"{redirect}?{query}"})

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in params.get("scope", "").split():
            return back(error="invalid_scope", error_description="openid is required")
        if params.get("code_challenge_method") != "S256" or len(params.get("code_challenge", "")) != 43:
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        if not submitted:
            return handler.send(200, self.login_form(params).encode(), "text/html; charset=utf-8")
        user = params.get("username", "")
        if user not in self.users:
            return back(error="access_denied", error_description=f"no user {user!r}")
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "redirect_uri": redirect,
            "challenge": params["code_challenge"],
            "user": user,
            "nonce": params.get("nonce"),
            "expires": time.time() + self.CODE_SECONDS,
        }
        back(code=code)

    def login_form(self, params: dict[str, str]) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
            if k != "username"
        )
        return (
            '<!doctype html><html lang=en><title>Test identity provider</title><link rel=icon href="data:,">'
            "<h1>Sign in to the test identity provider</h1>"
            f'<form method="post" action="/authorize">{hidden}'
            '<label for="username">User name</label> <input id="username" name="username" autocomplete="username">'
            ' <button type="submit" id="sign-in">Sign in</button></form>'
        )

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        grant = self.codes.pop(form.get("code", ""), None)  # a code is used once, even when refused
        verifier = form.get("code_verifier", "")
        if (
            grant is None
            or time.time() > grant["expires"]
            or form.get("client_id") != self.client_id
            or form.get("redirect_uri") != grant["redirect_uri"]
            or _s256(verifier) != grant["challenge"]
        ):
            self.refused.append("invalid_grant")
            return 400, {"error": "invalid_grant"}
        now, user = int(time.time()), grant["user"]
        common = {
            "iss": self.issuer,
            "sub": user,
            "iat": now,
            "exp": now + self.token_seconds,
            "preferred_username": user,
        }
        access = {
            **common,
            "aud": self.audience,
            "azp": self.client_id,
            "scope": "openid",
            "realm_access": {"roles": self.users[user]},
        }
        identity = {**common, "aud": self.client_id, **({"nonce": grant["nonce"]} if grant["nonce"] else {})}
        token = self.sign(access)
        self.issued.append(token)
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_seconds,
            "scope": "openid",
            "id_token": self.sign(identity),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def _single(values: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in values.items()}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
