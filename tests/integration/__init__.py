"""Integration tests: the storage layer and the gRPC server on real SQLite and PostgreSQL."""
