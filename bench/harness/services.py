"""Processes of a benchmark run: the app, the Claude stand-in, a bare hypercorn app, each stopped.

Every process runs in its own session so that stopping it stops its children (hypercorn's
workers) too; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: this checkout's code first on the path."""
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep), **(extra or {})}


@dataclass
class Service:
    """One started process (and its children), its URL and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    stop_timeout: float = STOP_TIMEOUT

    @property
    def pid(self) -> int:
        """The process id of the command itself (hypercorn's master for served apps)."""
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """Hypercorn's worker processes: children started through multiprocessing's spawn."""
        workers = [pid for pid in child_pids(self.pid) if b"spawn_main" in _cmdline(pid)]
        return workers or [self.pid]

    def stop(self) -> None:
        """SIGTERM to the whole session, then SIGKILL after stop_timeout."""
        if self.process.poll() is not None:
            return
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)


def child_pids(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(text) for text in task.read_text().split()]
        except OSError:
            continue
    return children


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def start(
    stack: ExitStack,
    name: str,
    command: Sequence[str],
    *,
    url: str,
    ready_path: str,
    log_dir: Path,
    environment: Mapping[str, str] | None = None,
    stop_timeout: float = STOP_TIMEOUT,
) -> Service:
    """Start a command in its own session, stop it with the stack, return once it answers."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            env=child_environment(environment),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(name, process, url, log_path, stop_timeout)
    stack.callback(service.stop)
    wait_until_answering(service, ready_path)
    return service


def wait_until_answering(service: Service, path: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `path` until it answers 200; fail with the log's tail if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(service.url + path, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_INTERVAL)
    tail = service.log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{service.name} did not answer {path}; its log ends with:\n{tail}")


def python_command(*arguments: str) -> list[str]:
    """This interpreter, with warnings off (they would only fill the logs)."""
    return [sys.executable, "-W", "ignore", *arguments]
