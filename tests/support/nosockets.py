"""The error the unit suite's socket guard raises (tests/unit/conftest.py)."""


class SocketUsed(AssertionError):
    """A unit test tried to use the network; it belongs in tests/integration."""
