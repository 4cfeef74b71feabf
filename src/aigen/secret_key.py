"""The development signing key: random, made once, kept in AIGEN_DATA_DIR with mode 0600.

A key written in the source would let anyone who read it sign a cookie as any user. Without
SECRET_KEY (development), each checkout makes its own key and keeps it, so sessions survive
restarts and every worker process signs with the same key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILE = "secret_key"
KEY_BYTES = 48
MIN_KEY_CHARS = 32
PRIVATE = 0o600


def development_secret_key(data_dir: Path) -> str:
    """The key kept in `data_dir`, made on first use (safe when several workers start at once)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        _create(path, secrets.token_urlsafe(KEY_BYTES))
    os.chmod(path, PRIVATE)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"{path} holds no usable key: delete it to make a new one")
    return key


def _create(path: Path, key: str) -> None:
    """Write the key to a private temporary file, then link it in unless another process won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(key + "\n")
        # link() never replaces: readers only ever see a complete file, and the first one wins.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
