"""Shared fixtures: the real Redis server, SoftHSM token and Kannel a test session starts, and a test PKI."""

pytest_plugins = [
    "tests.support.redis_fixtures",
    "tests.support.hsm_fixtures",
    "tests.support.kannel_fixtures",
    "tests.support.pki_fixtures",
]
