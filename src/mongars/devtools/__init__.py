"""Tools for developers and tests, never imported by the service itself."""
