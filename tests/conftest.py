"""Shared pytest fixtures: the fixtures live in tests/fixtures/, one module per part."""

pytest_plugins = [
    'tests.fixtures.stream_load',
    'tests.fixtures.kafka',
    'tests.fixtures.real_kafka',
    'tests.fixtures.flink',
]

import pytest

TIERS = ('unit', 'transform', 'e2e', 'reliability', 'integration', 'heavy')


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
  """Every test belongs to a tier (pytest.ini's markers), so `-m <tier>` selects every test once."""
  untiered = [item.nodeid for item in items
              if not any(item.get_closest_marker(tier) for tier in TIERS)]
  if untiered:
    raise pytest.UsageError(f'{len(untiered)} test(s) carry no tier marker ({", ".join(TIERS)}), '
                            f'e.g. {untiered[0]}: add `pytestmark = pytest.mark.<tier>`')
