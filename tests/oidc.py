"""A fake OIDC identity provider on loopback: discovery document and JWKS, with keys the tests can rotate."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from eolake_kit.auth import AuthConfig

AUDIENCE = "eolake"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEYS: dict[str, Any] = {
    "k1": _rsa(), "k2": _rsa(), "rogue": _rsa(), "ec1": ec.generate_private_key(ec.SECP256R1())
}


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
            oidc_issuer=self.issuer, oidc_audience=AUDIENCE, oidc_jwks_url=self.jwks_url,
            jwks_refresh_cooldown_seconds=0,
        )
        return AuthConfig(**{**base, **kw})

    def mint(self, kid: str = "k1", realm_roles: tuple[str, ...] = ("user",), **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
            "realm_access": {"roles": list(realm_roles)},
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        signer = "rogue" if kid == "forged-k1" else kid
        kid = "k1" if kid == "forged-k1" else kid
        alg = "ES256" if kid.startswith("ec") else "RS256"
        return jwt.encode(payload, KEYS[signer], algorithm=alg, headers={"kid": kid})
