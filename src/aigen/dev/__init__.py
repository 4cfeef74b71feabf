"""Development stand-ins (Claude, sign-in, launcher); imported only by the CLI, tests and bench."""
