"""The server tests: a package, so that mypy tells its conftest.py from
tests/sdk/conftest.py and tests/store/conftest.py."""
