"""Business rules in plain Python: no gRPC, no protobuf, no database."""
