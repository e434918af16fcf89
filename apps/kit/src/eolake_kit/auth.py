"""Authentication for eolake services: OIDC bearer tokens (JWKS) and API keys for service accounts.

Roles form a ladder, ``public`` < ``user`` < ``admin``; a higher role implies the lower ones and
anonymous callers are ``public``. Bad credentials are always a 401, even on public routes: a caller
who sent a token expects it to count, so it is never silently downgraded to anonymous.

JWKS location: ``oidc_jwks_url`` when set, otherwise discovered lazily (on the first token) from
``{oidc_issuer}/.well-known/openid-configuration``; this matches Keycloak, whose keys live at
``{issuer}/protocol/openid-connect/certs``. Fetching keys blocks, so the FastAPI dependencies are
plain ``def`` functions, which FastAPI runs in its threadpool.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jwt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException
from starlette.requests import Request

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("public", "user", "admin")
_LEVEL = {role: i for i, role in enumerate(ROLES)}
API_KEY_PREFIX = "eol_"
# Asymmetric algorithms only: "none" and HS* (which a public key could be abused to forge) never pass.
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class AuthConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None  # None: discovered from the issuer's openid-configuration
    roles_claim: str = Field("realm_access.roles", min_length=1)
    api_keys_file: Path | None = None
    leeway_seconds: int = Field(30, ge=0, le=300)
    jwks_cache_seconds: float = Field(300, gt=0)
    # Minimum gap between JWKS refetches caused by unknown key ids, so junk tokens can't hammer the IdP.
    jwks_refresh_cooldown_seconds: float = Field(10, ge=0)
    jwks_timeout_seconds: float = Field(5, gt=0)

    @model_validator(mode="after")
    def _check(self) -> AuthConfig:
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("oidc_audience is required when oidc_issuer is set")
        if not self.oidc_issuer and (self.oidc_audience or self.oidc_jwks_url):
            raise ValueError("oidc_audience and oidc_jwks_url need oidc_issuer")
        return self


def _effective_roles(roles: set[str] | frozenset[str]) -> frozenset[str]:
    top = max((_LEVEL[r] for r in roles if r in _LEVEL), default=0)
    return frozenset(roles) | frozenset(ROLES[: top + 1])


@dataclass(frozen=True)
class Principal:
    subject: str  # OIDC sub, "apikey:<name>" or "anonymous"
    roles: frozenset[str]  # effective roles: includes every role implied by a higher one
    kind: Literal["oidc", "apikey", "anonymous"]

    def has(self, role: str) -> bool:
        if role in self.roles:
            return True
        need = _LEVEL.get(role)
        return need is not None and any(_LEVEL.get(r, -1) >= need for r in self.roles)


ANONYMOUS = Principal("anonymous", frozenset({"public"}), "anonymous")


def _quote(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


class AuthError(Exception):
    """A rejected request. ``error`` is the RFC 6750 code for the challenge: None sends no challenge (503),
    "" a bare one, for requests that carried no credentials (RFC 6750 section 3.1)."""

    def __init__(
        self,
        status: int,
        detail: str,
        error: str | None = "invalid_token",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error = error
        self.headers = headers or {}

    @property
    def www_authenticate(self) -> str | None:
        if self.error is None:
            return None
        if not self.error:
            return 'Bearer realm="eolake"'
        return f'Bearer realm="eolake", error="{self.error}", error_description="{_quote(self.detail)}"'

    def to_http(self) -> HTTPException:
        headers = dict(self.headers)
        if self.www_authenticate:
            headers["WWW-Authenticate"] = self.www_authenticate
        return HTTPException(status_code=self.status, detail=self.detail, headers=headers or None)


def _unavailable(why: str) -> AuthError:
    log.warning("identity provider unavailable: %s", why)
    return AuthError(503, "identity provider unavailable", error=None, headers={"Retry-After": "5"})


# ---------------------------------------------------------------- API keys


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _read_keys(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(
        isinstance(k, dict) and {"name", "role", "sha256"} <= k.keys() for k in keys
    ):
        raise ValueError(f"{path}: expected {{'keys': [{{'name', 'role', 'sha256', ...}}]}}")
    return keys


def create_api_key(path: Path, name: str, role: str) -> str:
    """Add a service-account key to the key file and return the clear key; only its hash is stored."""
    if role not in _LEVEL:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if not name or not name.isprintable():
        raise ValueError("API key name must be a non-empty printable string")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    # The lock serialises concurrent writers so one append can't drop another.
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        keys = _read_keys(path)
        if any(k["name"] == name for k in keys):
            raise ValueError(f"an API key named {name!r} already exists")
        keys.append({"name": name, "role": role, "sha256": _hash(key), "created": datetime.now(UTC).isoformat()})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"keys": keys}, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return key


class _ApiKeys:
    """The key file, re-read whenever its mtime or size changes; a broken rewrite keeps the last good set."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = (-1, -1)  # never a real stamp: forces the first read
        self._keys: list[dict[str, Any]] = []
        self._refresh(strict=True)

    def _refresh(self, strict: bool = False) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        try:
            self._keys = _read_keys(self.path) if stamp else []
        except (OSError, ValueError) as e:
            if strict:
                raise
            log.error("keeping previous API keys: cannot read %s: %s", self.path, e)
        self._stamp = stamp

    def lookup(self, key: str) -> Principal | None:
        with self._lock:
            self._refresh()
            keys = self._keys
        digest = _hash(key)
        found = None
        for entry in keys:  # no early exit: timing reveals nothing about which entry matched
            if hmac.compare_digest(digest, str(entry["sha256"])):
                found = entry
        if found is None:
            return None
        return Principal(f"apikey:{found['name']}", _effective_roles({str(found["role"])}), "apikey")


# ---------------------------------------------------------------- OIDC


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


_TOKEN_ERRORS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.InvalidAlgorithmError, "signing algorithm not allowed"),
    (jwt.DecodeError, "malformed token"),
]


class Authenticator:
    def __init__(self, config: AuthConfig):
        self.config = config
        self._api_keys = _ApiKeys(config.api_keys_file) if config.api_keys_file else None
        self._jwks: jwt.PyJWKClient | None = None
        self._jwks_lock = threading.Lock()
        if config.oidc_jwks_url:
            self._jwks = self._client(config.oidc_jwks_url)

    def _client(self, url: str) -> jwt.PyJWKClient:
        c = self.config
        return jwt.PyJWKClient(
            url,
            lifespan=c.jwks_cache_seconds,
            cooldown_duration=c.jwks_refresh_cooldown_seconds,
            timeout=c.jwks_timeout_seconds,
        )

    def _jwks_client(self) -> jwt.PyJWKClient:
        with self._jwks_lock:
            if self._jwks is None:
                self._jwks = self._client(self._discover())
            return self._jwks

    def _discover(self) -> str:
        issuer = str(self.config.oidc_issuer)
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=self.config.jwks_timeout_seconds) as resp:
                doc = json.load(resp)
        except (OSError, ValueError) as e:
            raise _unavailable(f"discovery at {url} failed: {e}") from None
        if not isinstance(doc, dict) or doc.get("issuer") != issuer or not doc.get("jwks_uri"):
            raise _unavailable(f"discovery document at {url} lacks jwks_uri or names another issuer")
        return str(doc["jwks_uri"])

    def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        if authorization and api_key:
            raise AuthError(401, "send either a bearer token or an API key, not both", "invalid_request")
        if api_key:
            return self._from_api_key(api_key)
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise AuthError(401, "expected 'Authorization: Bearer <token>'", "invalid_request")
            return self._from_token(token)
        return ANONYMOUS

    def _from_api_key(self, key: str) -> Principal:
        found = self._api_keys.lookup(key) if self._api_keys else None
        if found is None:
            raise AuthError(401, "invalid API key")
        return found

    def _from_token(self, token: str) -> Principal:
        c = self.config
        if not c.oidc_issuer:
            raise AuthError(401, "bearer tokens are not accepted by this service")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(401, "malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:  # a JSON object is no name (and unhashable)
            raise AuthError(401, "signing algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError(401, "token has no key id")  # a kid-less token would force a JWKS refetch
        key = self._signing_key(kid)
        if key.algorithm_name not in ALLOWED_ALGORITHMS:
            raise AuthError(401, "signing algorithm not allowed")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                audience=c.oidc_audience,
                issuer=c.oidc_issuer,
                leeway=c.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.MissingRequiredClaimError as e:
            raise AuthError(401, f"token lacks the {e.claim!r} claim") from None
        except jwt.InvalidTokenError as e:
            detail = next((d for t, d in _TOKEN_ERRORS if isinstance(e, t)), "invalid token")
            raise AuthError(401, detail) from None
        if not claims["sub"]:
            raise AuthError(401, "token has an empty subject")
        return Principal(claims["sub"], self._roles(claims), "oidc")

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        client = self._jwks_client()
        try:
            # Unknown kid: PyJWKClient refetches the set once (rate-limited by the cooldown).
            return client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as e:
            raise _unavailable(str(e)) from None
        except jwt.PyJWKClientError as e:
            if "Unable to find a signing key" in str(e):
                raise AuthError(401, "unknown signing key") from None
            raise _unavailable(str(e)) from None
        except (jwt.PyJWTError, ValueError) as e:  # unparsable or empty key set
            raise _unavailable(f"bad JWKS: {e}") from None

    def _roles(self, claims: Mapping[str, Any]) -> frozenset[str]:
        raw = _claim(claims, self.config.roles_claim)
        if raw is None:
            raw = claims.get("roles")
        if isinstance(raw, str):
            raw = [raw]
        roles = {r for r in raw if isinstance(r, str)} if isinstance(raw, list) else set()
        return _effective_roles(roles)


# ---------------------------------------------------------------- FastAPI dependencies


def principal(request: Request) -> Principal:
    """The caller; anonymous without credentials, 401 with bad ones. Sync on purpose: JWKS fetches block."""
    authenticator: Authenticator = request.app.state.authenticator
    try:
        who = authenticator.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
    except AuthError as e:
        raise e.to_http() from None
    request.state.principal = who
    return who


def require_role(role: str) -> Callable[..., Principal]:
    """Dependency: the caller, who must hold ``role`` (401 when anonymous, 403 when the role is missing)."""
    from fastapi import Depends  # here: the settings, and the processes without routes, need no FastAPI

    if role not in _LEVEL:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    def dependency(who: Principal = Depends(principal)) -> Principal:
        if who.has(role):
            return who
        if who.kind == "anonymous":
            raise AuthError(401, "authentication required", error="").to_http()
        raise AuthError(403, f"requires role '{role}'", "insufficient_scope").to_http()

    dependency.__name__ = f"require_{role}"
    dependency.eolake_role = role  # type: ignore[attr-defined]  # read by the OpenAPI contract (eolake_kit.contract) to document the route
    return dependency
