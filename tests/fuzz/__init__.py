"""Property-based fuzzing of the gRPC and REST APIs against the real server and gateway."""
