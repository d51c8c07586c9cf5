"""Outbound clients: the Redis state store (with its Lua scripts and embedded server) and SMS gateways."""
