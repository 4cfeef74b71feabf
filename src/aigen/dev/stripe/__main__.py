"""``python -m aigen.dev.stripe``: serve the Stripe stand-in on 127.0.0.1."""

from aigen.dev.stripe.server import main

raise SystemExit(main())
