"""`python -m bench [--quick]`: the performance suite (see bench/suite.py)."""

import sys
from pathlib import Path

# Measure the checkout this file is in, whatever aigen the virtualenv has installed.
sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]

from bench.suite import main  # noqa: E402

raise SystemExit(main())
