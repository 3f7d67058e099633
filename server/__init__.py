"""The Experiments service: domain rules, use cases, storage adapters and entrypoints."""
