"""Shared pieces of the reliability suite: records, the exactly-once check, server helpers."""

from __future__ import annotations

import collections
import socket
import urllib.request
from decimal import Decimal
from typing import Dict, Iterable, List, Sequence

import orjson
from prometheus_client.parser import text_string_to_metric_families

EVENT_COLUMNS = 'event_id, user_id, event_type, amount, payload'


def event(i: int, payload_size: int = 40) -> dict:
  """The demo.events row of event ``i`` (values derived from ``i``, so content is checkable)."""
  return {'event_id': i, 'user_id': i % 97, 'event_type': f't{i % 5}',
          'amount': f'{i % 1000}.{i % 100:02d}', 'payload': f'p{i}-' + 'x' * payload_size}


def event_bytes(ids: Iterable[int], payload_size: int = 40) -> List[bytes]:
  return [orjson.dumps(event(i, payload_size)) for i in ids]


def user(i: int, version: int = 0) -> dict:
  """The demo.users row of user ``i`` at ``version``."""
  return {'id': i, 'name': f'u{i}-v{version}', 'email': f'u{i}@example.com', 'age': 20 + version}


def user_bytes(ids: Iterable[int], version: int = 0) -> List[bytes]:
  return [orjson.dumps(user(i, version)) for i in ids]


def event_tuple(row: dict) -> tuple:
  return (row['event_id'], row['user_id'], row['event_type'], Decimal(row['amount']),
          row['payload'])


def events_in_table(server) -> List[tuple]:
  return server.query(f'SELECT {EVENT_COLUMNS} FROM demo.events ORDER BY event_id')


def assert_events_exactly_once(server, ids: Sequence[int], payload_size: int = 40) -> None:
  """demo.events holds each event of ``ids`` once, with its content, and nothing else."""
  count, distinct = server.query('SELECT count(*), count(DISTINCT event_id) FROM demo.events')[0]
  assert (count, distinct) == (len(ids), len(ids)), (
      f'expected {len(ids)} rows once each, table has {count} rows, {distinct} distinct ids; '
      f'duplicated: {duplicated_event_ids(server)[:10]}')
  expected = [event_tuple(event(i, payload_size)) for i in sorted(ids)]
  assert events_in_table(server) == expected


def assert_users_hold(server, versions: Dict[int, int]) -> None:
  """demo.users holds exactly the users of ``versions`` (id -> version), one row each."""
  rows = server.query('SELECT id, name, email, age FROM demo.users ORDER BY id')
  expected = [(i, f'u{i}-v{v}', f'u{i}@example.com', 20 + v) for i, v in sorted(versions.items())]
  assert rows == expected


def event_counts(server) -> Dict[int, int]:
  return dict(server.query('SELECT event_id, count(*) FROM demo.events GROUP BY event_id'))


def duplicated_event_ids(server) -> List[int]:
  return sorted(i for i, n in event_counts(server).items() if n > 1)


def load_statuses(server) -> collections.Counter:
  """How many load attempts the server saw per status (``Success``, ``HTTP 500``, ...)."""
  return collections.Counter(entry['status'] for entry in server.loads)


def offsets_by_partition(values_count: int, partitions: int) -> Dict[int, List[int]]:
  """Where ``KafkaCluster.produce`` (round robin) put record ``i``: partition -> [i...]."""
  out: Dict[int, List[int]] = collections.defaultdict(list)
  for i in range(values_count):
    out[i % partitions].append(i)
  return out


def uncommitted_ids(committed: Dict[int, int], first_id: int, count: int,
                    partitions: int) -> List[int]:
  """Ids of records produced round robin (id ``first_id + i`` -> partition ``i % partitions``,
  offset ``i // partitions``) whose offset is at or past the partition's committed offset."""
  out = []
  for i in range(count):
    partition, offset = i % partitions, i // partitions
    if offset >= committed.get(partition, 0):
      out.append(first_id + i)
  return out


def free_port() -> int:
  """A TCP port nothing listens on now (for a job's ``--metrics_port``)."""
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def metric_samples(port: int, name: str) -> list:
  """The samples of metric ``name`` a job serves on ``port`` (none while it cannot be reached)."""
  try:
    text = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5).read().decode()
  except OSError:
    return []
  return [sample for family in text_string_to_metric_families(text)
          for sample in family.samples if sample.name == name]


def records_consumed(port: int, topic: str) -> int:
  """How many records of ``topic`` the job serving ``port`` has read."""
  return int(sum(s.value for s in metric_samples(port, 'kafka_records_consumed_total')
                 if s.labels.get('topic') == topic))


def nonempty_end_offsets(kafka, topic: str) -> Dict[int, int]:
  """The end offsets of the partitions that hold records (empty ones have nothing to commit)."""
  return {p: end for p, end in kafka.end_offsets(topic).items() if end}
