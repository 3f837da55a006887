"""Shared pytest fixtures: the fixtures live in tests/fixtures/, one module per part."""

pytest_plugins = [
    'tests.fixtures.stream_load',
    'tests.fixtures.kafka',
    'tests.fixtures.real_kafka',
    'tests.fixtures.flink',
]
