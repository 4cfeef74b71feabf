"""``python -m aigen.dev.anthropic``: run the fake until interrupted."""

from aigen.dev.anthropic.server import main

raise SystemExit(main())
