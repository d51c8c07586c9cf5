"""Shared fixtures: real Redis (one server, and a 3-primary cluster), SoftHSM and Kannel started by the
session, a test PKI, logs and spans."""

pytest_plugins = [
    "tests.support.redis_fixtures",
    "tests.support.full_redis",
    "tests.support.redis_cluster",
    "tests.support.hsm_fixtures",
    "tests.support.kannel_fixtures",
    "tests.support.pki_fixtures",
    "tests.support.telemetry_fixtures",
]
