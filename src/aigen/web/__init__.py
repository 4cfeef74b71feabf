"""The HTTP face: blueprints, and the request plumbing (current user, CSRF, headers, errors)."""
