"""The load benchmark (`make bench`): run as `python -m bench.run`; see bench/README.md."""
