"""Fakes the tests share."""


class FakeClock:
  """Time that moves only when told: call it for the time, ``sleep`` to move it on.

  Args:
    now: the starting time.
  """

  def __init__(self, now: float = 1000.0):
    self.now = now
    self.sleeps = []

  def __call__(self) -> float:
    return self.now

  def sleep(self, secs: float) -> None:
    self.sleeps.append(secs)
    self.now += secs
