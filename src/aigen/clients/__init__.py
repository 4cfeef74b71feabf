"""What talks to other systems: Claude, the OpenID Connect provider, mail, rate-limit backends."""
