"""The local sign-in provider (oidc-provider-mock) for development and tests, never production."""

import os
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import IO, Self
from urllib.parse import quote

import httpx

from aigen.dev.serving import find_free_port

HOST = "127.0.0.1"  # the mock runs Flask's debugger: loopback only
DISCOVERY_PATH = "/.well-known/openid-configuration"
PRODUCTION_ENV = "production"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.05
REQUEST_TIMEOUT = 5.0
PROBE_TIMEOUT = 1.0
STDERR_TAIL_BYTES = 2000


class LocalOIDCProviderError(RuntimeError):
    """The local sign-in provider could not be started or used."""


class LocalOIDCProvider:
    """oidc-provider-mock in a subprocess on 127.0.0.1, with helpers for tests."""

    def __init__(
        self,
        *,
        port: int | None = None,
        require_nonce: bool = True,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self._port = port
        self._require_nonce = require_nonce
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, which is also the issuer (the mock takes it from the Host header)."""
        if self._process is None or self._port is None:
            raise LocalOIDCProviderError("the local sign-in provider is not running")
        return f"http://{HOST}:{self._port}"

    @property
    def discovery_url(self) -> str:
        """URL of the OpenID Connect discovery document."""
        return self.url + DISCOVERY_PATH

    def start(self) -> None:
        """Start the provider and wait until it serves its discovery document."""
        if os.environ.get("AIGEN_ENV") == PRODUCTION_ENV:
            raise LocalOIDCProviderError("the local sign-in provider never runs in production")
        if self._process is not None:
            return
        self._port = self._port or find_free_port(HOST)
        self._stderr = tempfile.TemporaryFile()  # a pipe could fill up and stall the server
        self._process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**os.environ, "NO_COLOR": "1"},
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the provider: terminate, wait, then kill if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def set_user(
        self,
        sub: str,
        *,
        email: str,
        email_verified: bool = True,
        name: str | None = None,
        picture: str | None = None,
    ) -> None:
        """Set the claims the provider will put in ID tokens for `sub`."""
        claims: dict[str, object] = {"email": email, "email_verified": email_verified}
        claims |= {key: value for key, value in (("name", name), ("picture", picture)) if value}
        response = httpx.put(
            f"{self.url}/users/{quote(sub, safe='')}", json=claims, timeout=REQUEST_TIMEOUT
        )
        response.raise_for_status()

    async def sign_in_via_form(
        self, authorize_url: str, sub: str, client: httpx.AsyncClient
    ) -> str:
        """Submit the provider's sign-in form as `sub`; return the redirect to our callback."""
        if not authorize_url.startswith(self.url + "/"):
            raise LocalOIDCProviderError(f"not this provider's URL: {authorize_url}")
        # The form has no action attribute: it posts to the authorize URL, query string included.
        response = await client.post(authorize_url, data={"sub": sub}, follow_redirects=False)
        location = response.headers.get("location")
        if not response.is_redirect or not location:
            raise LocalOIDCProviderError(
                f"sign-in form answered {response.status_code}: {response.text[:300]}"
            )
        return location

    def _command(self) -> list[str]:
        """The command line that runs the provider on our port."""
        command = [sys.executable, "-m", "oidc_provider_mock", "-H", HOST, "-p", str(self._port)]
        return command + ["--require-nonce"] if self._require_nonce else command

    def _wait_until_ready(self) -> None:
        """Poll the discovery document until it answers; fail with the stderr tail."""
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise self._start_failure(f"exited with status {self._process.returncode}")
            if self._answers():
                return
            time.sleep(POLL_INTERVAL)
        raise self._start_failure(f"did not answer within {self._start_timeout:g} s")

    def _answers(self) -> bool:
        """Whether the discovery document is served yet."""
        try:
            return httpx.get(self.discovery_url, timeout=PROBE_TIMEOUT).is_success
        except httpx.TransportError:
            return False

    def _start_failure(self, what: str) -> LocalOIDCProviderError:
        """Build the start-up error, quoting the end of the provider's stderr."""
        tail = b""
        if self._stderr is not None:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - STDERR_TAIL_BYTES))
            tail = self._stderr.read()
        message = f"local sign-in provider on port {self._port} {what}; stderr:\n"
        return LocalOIDCProviderError(message + tail.decode(errors="replace"))
