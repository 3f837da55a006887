"""The dead-letter budget: how many of the last records read may end in dead letters."""

import pytest

from transforms.dead_letters import BudgetWindow, DeadLetterBudget

pytestmark = pytest.mark.unit


def test_a_run_of_bad_records_exceeds_the_budget_once_there_are_enough_of_them():
  window = BudgetWindow(DeadLetterBudget(max_ratio=0.1, window_records=10_000, min_letters=100))
  assert window.add(records_read=99, letters=99) is None  # fewer than 100: a few bad records
  why = window.add(records_read=500, letters=401)
  assert why == ('500 of the last 500 records read (100%) went to dead letters, over '
                 '--max_dead_letter_ratio=0.1')


def test_bad_records_spread_thinly_stay_within_the_budget():
  window = BudgetWindow(DeadLetterBudget(max_ratio=0.1, window_records=10_000, min_letters=100))
  read = 0
  for _ in range(100):  # 1,000,000 records, 5% of them bad
    read += 10_000
    assert window.add(read, 500) is None


def test_the_window_forgets_old_records_so_a_long_clean_history_does_not_hide_a_bad_run():
  window = BudgetWindow(DeadLetterBudget(max_ratio=0.1, window_records=10_000, min_letters=100))
  assert window.add(10_000_000, 0) is None  # months of good records
  for step in range(1, 5):  # then 1,000 records, 300 of them bad, at a time
    why = window.add(10_000_000 + 1_000 * step, 300)
    if step == 1:
      assert why is not None and why.startswith('300 of the last 1000 records read (30%)')


def test_a_ratio_of_one_never_stops_and_bad_ratios_are_refused():
  window = BudgetWindow(DeadLetterBudget(max_ratio=1.0))
  assert window.add(1000, 1000) is None
  with pytest.raises(ValueError, match='--max_dead_letter_ratio'):
    DeadLetterBudget(max_ratio=1.5)
