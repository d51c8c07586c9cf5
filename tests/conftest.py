"""Shared fixtures: the real Redis server and SoftHSM token a test session starts for itself."""

pytest_plugins = ["tests.support.redis_fixtures", "tests.support.hsm_fixtures"]
