"""Debian's PgBouncer in transaction pooling mode, in a temporary folder, on a free port."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.harness.services import HOST, free_port

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
POOL_SIZE = 20
# PgBouncer refuses to run as root; the PostgreSQL packages create this account.
RUN_AS = "postgres"


def pgbouncer_ini(database: str, server: str, port: int, folder: Path) -> str:
    """A configuration with one database, trust auth from 127.0.0.1, transaction pooling."""
    parts = urlsplit(server)
    return f"""\
[databases]
{database} = host={parts.hostname or HOST} port={parts.port or 5432} dbname={database} \
user={parts.username or "postgres"}

[pgbouncer]
listen_addr = {HOST}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "userlist.txt"}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 10000
ignore_startup_parameters = extra_float_digits,options
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
"""


@contextmanager
def running_pgbouncer(pgbouncer: str, server_url: str, database: str) -> Iterator[str]:
    """Start PgBouncer in front of `database`; yield the URL clients connect to."""
    folder = Path(tempfile.mkdtemp(prefix="aigen-pgbouncer-"))
    port = free_port()
    user = urlsplit(server_url).username or "postgres"
    (folder / "pgbouncer.ini").write_text(pgbouncer_ini(database, server_url, port, folder))
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    command = [pgbouncer, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        account = pwd.getpwnam(RUN_AS)
        for path in (folder, *folder.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
        command = ["runuser", "-u", RUN_AS, "--", *command]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_listening(process, port, folder)
        parts = urlsplit(server_url)
        yield urlunsplit(parts._replace(netloc=f"{user}@{HOST}:{port}", path=f"/{database}"))
    finally:
        _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # runuser and pgbouncer share the session started for them: stop both.
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_listening(process: subprocess.Popen[bytes], port: int, folder: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    log = folder / "pgbouncer.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"pgbouncer did not start; its log ends with:\n{tail}")
