"""Unit tests of the business rules and use cases: no database, no network, no gRPC."""
