"""Test-wide configuration: the fixtures of ``tests/fixtures`` (see its docstring for the list)."""

pytest_plugins = [
    "tests.fixtures.tools",
    "tests.fixtures.cosign",
    "tests.fixtures.registry",
    "tests.fixtures.images",
    "tests.fixtures.nodes",
    "tests.fixtures.token_server",
    "tests.fixtures.service",
    "tests.fixtures.access",
]
