"""Use cases: one transaction per request, rules from the domain, storage through ports."""
