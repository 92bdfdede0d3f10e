"""The store contract suites: a package, so that mypy tells its conftest.py from
tests/sdk/conftest.py."""
