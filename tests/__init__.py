"""The test suite: unit, integration and end-to-end tiers."""
