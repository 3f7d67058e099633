"""Entrypoints: the gRPC server and servicer, the admin CLI."""
