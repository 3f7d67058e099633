"""The REST gateway: Envoy's configuration, its launcher and `make run`'s supervisor."""
