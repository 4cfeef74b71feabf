"""Where the project's non-Python folders live (templates/, static/, sql/ at the top level)."""

from __future__ import annotations

import os
from pathlib import Path


def _project_root() -> Path:
    """AIGEN_HOME if set, else the checkout this package was installed from, else the cwd."""
    configured = os.environ.get("AIGEN_HOME")
    if configured:
        return Path(configured).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "sql").is_dir():
        return checkout
    return Path.cwd()


PROJECT_ROOT = _project_root()
SQL_DIR = PROJECT_ROOT / "sql"
TEMPLATES_DIR = PROJECT_ROOT / "templates"
STATIC_DIR = PROJECT_ROOT / "static"
