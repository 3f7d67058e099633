"""The storage ports (server.service_layer.ports) implemented with SQLAlchemy Core, one module
per thing stored: experiments (with the goals and rooms they refer to), idempotency keys,
principals. Everything runs on the connection the unit of work hands in."""
