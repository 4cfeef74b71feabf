"""A tiny OpenID provider of our own, served on loopback, that signs whatever ID token a test wants.

oidc-provider-mock cannot forge tokens (foreign issuer, bad nonce, unknown key): this can.
"""

from __future__ import annotations

import json
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from quart import Quart, Response, request

from aigen.dev.serving import LOOPBACK, ThreadedServer, find_free_port

JSON = "application/json"


class FakeProvider:
    """A tiny OpenID provider whose token endpoint answers whatever the test scripts."""

    def __init__(self) -> None:
        self.port = find_free_port()
        self.issuer = f"http://{LOOPBACK}:{self.port}"
        self.discovery_url = self.issuer + "/.well-known/openid-configuration"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "fake-1"})
        self.app = self._build_app()
        self.reset()

    def served(self) -> ThreadedServer:
        """A server for this provider on its port (use it as a context manager)."""
        return ThreadedServer(self.app, port=self.port, name="fake-oidc-provider")

    def reset(self) -> None:
        """Forget what earlier tests scripted and saw."""
        self.served_keys: list[Any] = [self.key]  # KeySet takes a list of its key union
        # None stands for a provider that answers null for the methods it supports.
        self.auth_methods: list[str] | None = ["client_secret_post"]
        self.answer = Response("no answer scripted", 500)
        self.id_token = ""
        self.token_requests: list[dict[str, Any]] = []
        self.fetches = {"discovery": 0, "jwks": 0}

    def answer_with_id_token(self, claims: dict[str, Any], key: RSAKey | None = None) -> None:
        """Have the token endpoint return an ID token with these claims, signed by `key`."""
        key = key or self.key
        self.id_token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
        body = {"access_token": "at", "token_type": "Bearer", "id_token": self.id_token}
        self.answer = Response(json.dumps(body), 200, content_type=JSON)

    def _build_app(self) -> Quart:
        """Discovery, JWKS and token endpoint."""
        app = Quart(__name__)

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            self.fetches["discovery"] += 1
            return {
                "issuer": self.issuer,
                "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token",
                "jwks_uri": self.issuer + "/jwks",
                "token_endpoint_auth_methods_supported": self.auth_methods,
            }

        @app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            self.fetches["jwks"] += 1
            return dict(KeySet(self.served_keys).as_dict())

        @app.post("/token")
        async def token() -> Response:
            sent = dict(await request.form) | {
                "authorization": request.headers.get("Authorization")
            }
            self.token_requests.append(sent)
            return self.answer

        return app
