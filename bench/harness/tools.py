"""External programs the harness drives (wrk, pgbench, pgbouncer, py-spy): found or installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

APT_TIMEOUT = 600


def ensure_program(program: str, debian_package: str) -> str | None:
    """The program's path; installed with apt-get when missing and we may (root on Debian)."""
    found = shutil.which(program) or _in_postgres_bin(program)
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    print(f"  installing Debian's {debian_package} (apt-get) ...", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", debian_package],
    ):
        subprocess.run(command, env=environment, capture_output=True, timeout=APT_TIMEOUT)
    return shutil.which(program)


def _in_postgres_bin(program: str) -> str | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / program).exists():
            return str(folder / program)
    return None


def venv_program(program: str) -> str | None:
    """A console script installed next to this interpreter (py-spy, pyinstrument)."""
    candidate = Path(sys.executable).with_name(program)
    return str(candidate) if candidate.exists() else shutil.which(program)


def version_of(command: list[str]) -> str | None:
    """The first line a program prints about its version, or None."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None
