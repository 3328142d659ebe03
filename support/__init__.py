"""What the tests, `make bench` and `make fuzz` share: local processes (redis-server, a cluster,
the service), ports and HTTP helpers. Not part of the service."""
