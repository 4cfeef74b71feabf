"""OpenID Connect relying party: one code path for Google and the local development provider."""

import asyncio
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# authlib's httpx client runs on httpx2, which the anthropic SDK brings along.
import httpx2 as http_transport
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

logger = logging.getLogger(__name__)

SCOPE = "openid email profile"
ID_TOKEN_ALGORITHMS = ("RS256", "ES256")
DISCOVERY_FIELDS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
# OpenID Connect Discovery: a provider that does not list its methods supports basic only.
DEFAULT_AUTH_METHODS = ("client_secret_basic",)
PREFERRED_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# Google documents that its ID tokens may carry the issuer without the scheme.
ISSUER_ALIASES = {"https://accounts.google.com": ("accounts.google.com",)}
PENDING_FIELDS = ("state", "nonce", "code_verifier")
RANDOM_BYTES = 32

MESSAGE_REFUSED = "Sign-in was cancelled or refused. Please try again."
MESSAGE_EXPIRED = "This sign-in attempt has expired or was started elsewhere. Please try again."
MESSAGE_INCOMPLETE = "The sign-in provider did not complete the sign-in. Please try again."
MESSAGE_UNAVAILABLE = "The sign-in provider is unavailable. Please try again later."
MESSAGE_BAD_ANSWER = "The sign-in provider gave an unexpected answer. Please try again later."
MESSAGE_UNVERIFIED = "Your sign-in could not be verified. Please try again."
MESSAGE_NO_EMAIL = "Your account did not share an email address, which is needed to sign in."


class SignInError(Exception):
    """A failed sign-in; the message is safe to show to the user and never contains tokens."""


@dataclass(frozen=True)
class Identity:
    """The signed-in person, as vouched for by the provider's ID token."""

    sub: str
    email: str
    email_verified: bool
    name: str | None
    picture: str | None


@dataclass(frozen=True)
class PendingSignIn:
    """What /login keeps in the signed session cookie until /auth/callback."""

    state: str
    nonce: str
    code_verifier: str

    def to_dict(self) -> dict[str, str]:
        """Serialise for the session cookie."""
        return {"state": self.state, "nonce": self.nonce, "code_verifier": self.code_verifier}

    @classmethod
    def from_dict(cls, data: object) -> "PendingSignIn":
        """Rebuild from the session cookie; SignInError when absent or malformed."""
        if not isinstance(data, Mapping):
            raise _rejected(MESSAGE_EXPIRED, "no pending sign-in in the session", logging.INFO)
        values = [data.get(name) for name in PENDING_FIELDS]
        strings = [value for value in values if isinstance(value, str) and value]
        if len(strings) != len(PENDING_FIELDS):
            raise _rejected(MESSAGE_EXPIRED, "malformed pending sign-in in the session")
        return cls(*strings)


class OIDCClient:
    """Signs people in with one OpenID Connect provider: code flow, PKCE S256, nonce."""

    def __init__(
        self,
        *,
        discovery_url: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        timeout: float = 10.0,
        leeway: int = 60,
    ) -> None:
        self._discovery_url = discovery_url
        self._client_id = client_id
        self._leeway = leeway
        self._oauth = AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            scope=SCOPE,
            code_challenge_method="S256",
            timeout=timeout,
        )
        self._provider: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._provider_lock = asyncio.Lock()
        self._keys_lock = asyncio.Lock()

    async def begin(self) -> tuple[str, PendingSignIn]:
        """Return the provider's authorization URL and what to remember until the callback."""
        provider = await self._load_provider()
        pending = PendingSignIn(
            state=secrets.token_urlsafe(RANDOM_BYTES),
            nonce=secrets.token_urlsafe(RANDOM_BYTES),
            code_verifier=secrets.token_urlsafe(RANDOM_BYTES * 2),
        )
        url, _ = self._oauth.create_authorization_url(
            provider["authorization_endpoint"],
            state=pending.state,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
        )
        return url, pending

    async def finish(self, params: Mapping[str, str], pending: PendingSignIn) -> Identity:
        """Check the callback's query args, redeem the code and verify the ID token."""
        code = _code_from_callback(params, pending)
        provider = await self._load_provider()
        id_token = await self._exchange_code(provider["token_endpoint"], code, pending)
        claims = await self._verify_signature(provider["jwks_uri"], id_token)
        self._check_claims(claims, provider["issuer"], pending.nonce)
        return _identity_from_claims(claims)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._oauth.aclose()

    async def _load_provider(self) -> dict[str, Any]:
        """Fetch the discovery document once and cache it."""
        async with self._provider_lock:
            if self._provider is None:
                self._provider = await self._fetch_discovery()
        return self._provider

    async def _fetch_discovery(self) -> dict[str, Any]:
        """Fetch and check the discovery document; pick the token endpoint auth method."""
        try:
            document = await self._fetch_json(self._discovery_url)
        except (http_transport.HTTPError, ValueError) as error:
            reason = f"discovery {self._discovery_url} failed: {error!r}"
            raise _rejected(MESSAGE_UNAVAILABLE, reason) from None
        if not isinstance(document, dict) or not all(
            isinstance(document.get(field), str) for field in DISCOVERY_FIELDS
        ):
            raise _rejected(MESSAGE_UNAVAILABLE, "discovery document lacks required fields")
        if document["issuer"].rstrip("/") + DISCOVERY_SUFFIX != self._discovery_url:
            raise _rejected(MESSAGE_UNAVAILABLE, f"issuer {document['issuer']!r} != discovery URL")
        self._oauth.token_endpoint_auth_method = _pick_auth_method(document)
        return document

    async def _fetch_json(self, url: str) -> Any:
        """GET a JSON document without any token."""
        # AsyncOAuth2Client.get() rejects withhold_token; request() accepts it.
        response = await self._oauth.request("GET", url, withhold_token=True)
        response.raise_for_status()
        return response.json()

    async def _exchange_code(self, token_endpoint: str, code: str, pending: PendingSignIn) -> str:
        """Redeem the authorization code (with the PKCE verifier) for an ID token."""
        try:
            token = await self._oauth.fetch_token(
                token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=pending.code_verifier,
            )
        except (http_transport.HTTPError, ValueError, AuthlibBaseError) as error:
            raise _rejected(MESSAGE_BAD_ANSWER, f"token endpoint failed: {error!r}") from None
        finally:
            self._oauth.token = None  # the shared client must not keep one person's tokens
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise _rejected(MESSAGE_BAD_ANSWER, "token endpoint answered without id_token")
        return id_token

    async def _verify_signature(self, jwks_uri: str, id_token: str) -> dict[str, Any]:
        """Return the ID token's claims once its signature checks out; refetch keys once."""
        try:
            return _decode_id_token(id_token, await self._load_keys(jwks_uri))
        except InvalidKeyIdError:
            logger.info("ID token signed with an unknown key id; refetching the JWKS")
        try:
            return _decode_id_token(id_token, await self._load_keys(jwks_uri, refresh=True))
        except InvalidKeyIdError as error:
            raise _rejected(MESSAGE_UNVERIFIED, f"ID token key unknown: {error}") from None

    async def _load_keys(self, jwks_uri: str, *, refresh: bool = False) -> KeySet:
        """Fetch the provider's signing keys once (or again when asked) and cache them."""
        async with self._keys_lock:
            if self._keys is None or refresh:
                self._keys = await self._fetch_keys(jwks_uri)
        return self._keys

    async def _fetch_keys(self, jwks_uri: str) -> KeySet:
        """Fetch and parse the JWKS."""
        try:
            document = await self._fetch_json(jwks_uri)
            return KeySet.import_key_set(document)
        except (http_transport.HTTPError, ValueError, TypeError, KeyError, JoseError) as error:
            raise _rejected(MESSAGE_UNAVAILABLE, f"JWKS unusable: {error!r}") from None

    def _check_claims(self, claims: dict[str, Any], issuer: str, nonce: str) -> None:
        """Check issuer, audience, authorized party, lifetime and nonce."""
        registry = jwt.JWTClaimsRegistry(
            leeway=self._leeway,
            iss={"essential": True, "values": [issuer, *ISSUER_ALIASES.get(issuer, ())]},
            aud={"essential": True, "value": self._client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise _rejected(MESSAGE_UNVERIFIED, f"ID token claims invalid: {error}") from None
        _check_authorized_party(claims, self._client_id)
        _check_nonce(claims, nonce)


def _rejected(message: str, reason: str, level: int = logging.WARNING) -> SignInError:
    """Log the precise reason for a failed sign-in and build the error the user sees."""
    logger.log(level, "sign-in rejected: %s", reason)
    return SignInError(message)


def _code_from_callback(params: Mapping[str, str], pending: PendingSignIn) -> str:
    """Return the authorization code from the callback's query args, or refuse them."""
    if "error" in params:
        error, description = params["error"], params.get("error_description")
        raise _rejected(
            MESSAGE_REFUSED, f"provider error {error!r} ({description!r})", logging.INFO
        )
    if not _same_secret(params.get("state"), pending.state):
        raise _rejected(MESSAGE_EXPIRED, "state missing or different from the one sent")
    code = params.get("code")
    if not code:
        raise _rejected(MESSAGE_INCOMPLETE, "callback without code")
    return code


def _same_secret(received: object, expected: str) -> bool:
    """Compare a received random value with ours in constant time."""
    if not isinstance(received, str):
        return False
    return secrets.compare_digest(received.encode(), expected.encode())


def _pick_auth_method(document: Mapping[str, Any]) -> str:
    """Choose how to authenticate at the token endpoint from what the provider supports."""
    supported = document.get("token_endpoint_auth_methods_supported") or DEFAULT_AUTH_METHODS
    for method in PREFERRED_AUTH_METHODS:
        if method in supported:
            return method
    raise _rejected(MESSAGE_UNAVAILABLE, f"no usable token endpoint auth method in {supported!r}")


def _decode_id_token(id_token: str, keys: KeySet) -> dict[str, Any]:
    """Verify the signature and return the claims; InvalidKeyIdError propagates for a refetch."""
    try:
        return jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS).claims
    except InvalidKeyIdError:
        raise
    except (JoseError, ValueError, KeyError) as error:
        raise _rejected(MESSAGE_UNVERIFIED, f"ID token not verifiable: {error}") from None


def _check_authorized_party(claims: Mapping[str, Any], client_id: str) -> None:
    """With several audiences (or any azp at all), azp must name us."""
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise _rejected(MESSAGE_UNVERIFIED, f"ID token azp {azp!r} is not our client id")


def _check_nonce(claims: Mapping[str, Any], nonce: str) -> None:
    """The nonce must be the one we sent with this very sign-in."""
    if not _same_secret(claims.get("nonce"), nonce):
        raise _rejected(MESSAGE_UNVERIFIED, "ID token nonce missing or different from the one sent")


def _identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """Build the Identity; an email address is required."""
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise _rejected(MESSAGE_NO_EMAIL, "ID token has no email claim")
    verified = claims.get("email_verified")
    return Identity(
        sub=claims["sub"],
        email=email,
        email_verified=verified is True or verified == "true",
        name=_optional_text(claims.get("name")),
        picture=_optional_text(claims.get("picture")),
    )


def _optional_text(value: object) -> str | None:
    """Keep a non-empty string claim, drop anything else."""
    return value if isinstance(value, str) and value else None
