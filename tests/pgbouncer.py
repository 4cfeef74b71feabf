"""Debian's PgBouncer in transaction pooling mode, started in front of a PostgreSQL server by a
test or by the benchmarks (bench/cases/pgbouncer.py), in a temporary folder, on a free port.

A missing pgbouncer fails the test (`.ci/run` installs it); it is never a reason to skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from aigen.dev.serving import LOOPBACK, find_free_port

PGBOUNCER_PATHS = ("pgbouncer", "/usr/sbin/pgbouncer")
# Few server connections for many clients, so sessions really are shared between them.
SERVER_POOL_SIZE = 3
MAX_CLIENTS = 500
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
# PgBouncer refuses to run as root; Debian's PostgreSQL packages create this account.
RUN_AS = "postgres"


@dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer: the URL of a database through it, and its log."""

    port: int
    user: str
    log: Path

    def url(self, database_url: str) -> str:
        """The same database as `database_url`, reached through PgBouncer."""
        name = urlsplit(database_url).path
        return urlunsplit(("postgresql", f"{self.user}@{LOOPBACK}:{self.port}", name, "", ""))

    def logins(self, database: str) -> int:
        """How many client connections to `database` PgBouncer has let in."""
        return self.log.read_text().count(f"login attempt: db={database} ")


def pgbouncer_path() -> str:
    """The pgbouncer executable, or an error saying how to install it."""
    for candidate in PGBOUNCER_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeError("pgbouncer is not installed: apt-get install pgbouncer (.ci/run does)")


def pgbouncer_ini(
    server_url: str,
    port: int,
    folder: Path,
    *,
    pool_size: int = SERVER_POOL_SIZE,
    max_clients: int = MAX_CLIENTS,
) -> str:
    """Every database of the server, transaction pooling, trust from loopback, nothing ignored.

    No `ignore_startup_parameters`: the app's `timezone` must reach PgBouncer and be tracked.
    """
    parts = urlsplit(server_url)
    host = parts.hostname or parse_qs(parts.query).get("host", [LOOPBACK])[0]
    return f"""\
[databases]
* = host={host} port={parts.port or 5432} user={parts.username or RUN_AS}

[pgbouncer]
listen_addr = {LOOPBACK}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "userlist.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = {max_clients}
logfile = {folder / "pgbouncer.log"}
"""


@contextmanager
def running_pgbouncer(
    server_url: str, *, pool_size: int = SERVER_POOL_SIZE, max_clients: int = MAX_CLIENTS
) -> Iterator[Bouncer]:
    """Run PgBouncer in the foreground on a free port until the block ends, `pool_size` server
    connections per database and user for at most `max_clients` clients."""
    folder = Path(tempfile.mkdtemp(prefix="aigen-pgbouncer-"))
    port = find_free_port()
    user = urlsplit(server_url).username or RUN_AS
    ini = pgbouncer_ini(server_url, port, folder, pool_size=pool_size, max_clients=max_clients)
    (folder / "pgbouncer.ini").write_text(ini)
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    command = [pgbouncer_path(), str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        account = pwd.getpwnam(RUN_AS)
        for path in (folder, *folder.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
        command[1:1] = ["--user", RUN_AS]
    with (folder / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(command, stdout=stderr, stderr=stderr)
    try:
        _wait_listening(process, port, folder)
        yield Bouncer(port, user, folder / "pgbouncer.log")
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_listening(process: subprocess.Popen[bytes], port: int, folder: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"pgbouncer did not start:\n{(folder / 'stderr.log').read_text(errors='replace')[-2000:]}"
    )
