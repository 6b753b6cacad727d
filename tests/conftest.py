"""Shared fixtures: each area keeps its own in `tests/fixtures/`, loaded here as plugins."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.jobs",
    "tests.fixtures.slack",
    "tests.fixtures.proxy",
]
