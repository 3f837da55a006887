"""The demo's Avro part: Debezium changes in Avro through a Schema Registry.

A second job of the demo, run when the registry support is installed (the
``registry`` extra, part of ``dev``): a Debezium-style Avro topic of payments
(decimal amounts, microsecond timestamps, dates) in the Confluent wire format,
with schemas in confluent-kafka's in-process ``mock://`` registry, whose
source table gains a column half-way through.  The job runs with
``--format=avro --cdc_format=debezium --create_tables
--schema_evolution=add_columns``: it creates ``demo.payments`` (UNIQUE KEY on
the Avro key) from the first schema, adds the new column when the second
schema appears, and applies inserts, updates and deletes.
"""

from __future__ import annotations

import copy
import json
from typing import Callable, List, Optional, Tuple

TOPIC = 'payments_avro'
TABLE = 'demo.payments'
REGISTRY_URL = 'mock://kafka-doris-demo'
_NS = 'dbserver1.shop.payments'


def available() -> Optional[str]:
  """None when the registry support is installed, else why the Avro part is skipped."""
  try:
    # pylint: disable=import-outside-toplevel,unused-import
    from confluent_kafka.schema_registry.avro import AvroSerializer  # noqa: F401
  except ImportError as error:
    return f'{error} (pip install -e ".[registry]")'
  return None


def _schemas() -> Tuple[dict, dict, dict]:
  """``(key, envelope v1, envelope v2)`` as Debezium's AvroConverter writes them."""
  key = {'type': 'record', 'name': 'Key', 'namespace': _NS, 'connect.name': f'{_NS}.Key',
         'fields': [{'name': 'payment_id', 'type': 'long'}]}
  value = {
      'type': 'record', 'name': 'Value', 'namespace': _NS, 'connect.name': f'{_NS}.Value',
      'fields': [
          {'name': 'payment_id', 'type': 'long'},
          {'name': 'user_id', 'type': 'long'},
          {'name': 'amount', 'type': {
              'type': 'bytes', 'logicalType': 'decimal', 'precision': 12, 'scale': 2,
              'connect.name': 'org.apache.kafka.connect.data.Decimal',
              'connect.parameters': {'scale': '2', 'connect.decimal.precision': '12'}}},
          {'name': 'paid_at', 'type': {'type': 'long',
                                       'connect.name': 'io.debezium.time.MicroTimestamp'}},
          {'name': 'booked_on', 'type': {'type': 'int', 'connect.name': 'io.debezium.time.Date'}},
      ]}
  source = {'type': 'record', 'name': 'Source', 'namespace': 'io.debezium.connector.mysql',
            'fields': [{'name': 'connector', 'type': 'string'}, {'name': 'db', 'type': 'string'},
                       {'name': 'table', 'type': 'string'}, {'name': 'ts_ms', 'type': 'long'}]}
  envelope = {'type': 'record', 'name': 'Envelope', 'namespace': _NS,
              'connect.name': f'{_NS}.Envelope',
              'fields': [{'name': 'before', 'type': ['null', value], 'default': None},
                         {'name': 'after', 'type': ['null', f'{_NS}.Value'], 'default': None},
                         {'name': 'source', 'type': source},
                         {'name': 'op', 'type': 'string'},
                         {'name': 'ts_ms', 'type': ['null', 'long'], 'default': None}]}
  changed = copy.deepcopy(envelope)  # ALTER TABLE payments ADD COLUMN method VARCHAR(16)
  changed['fields'][0]['type'][1]['fields'].append(
      {'name': 'method', 'type': ['null', 'string'], 'default': None})
  return key, envelope, changed


def _serializer(schema: dict, is_key: bool) -> Callable[[dict], bytes]:
  # pylint: disable=import-outside-toplevel
  from confluent_kafka.schema_registry.avro import AvroSerializer
  from confluent_kafka.serialization import MessageField, SerializationContext

  from transforms.records.formats import registry_client
  serializer = AvroSerializer(registry_client({'url': REGISTRY_URL}), json.dumps(schema))
  ctx = SerializationContext(TOPIC, MessageField.KEY if is_key else MessageField.VALUE)
  return lambda value: serializer(value, ctx)


def make_records(scale: int) -> Tuple[List[Tuple[bytes, bytes]], int]:
  """``([(key, value), ...], rows the table should end with)``."""
  from decimal import Decimal  # pylint: disable=import-outside-toplevel
  key_schema, v1, v2 = _schemas()
  key_of, first, second = (_serializer(key_schema, True), _serializer(v1, False),
                           _serializer(v2, False))
  source = {'connector': 'mysql', 'db': 'shop', 'table': 'payments', 'ts_ms': 1}
  n = max(scale, 10)

  def image(i: int, **extra) -> dict:
    return {'payment_id': i, 'user_id': i % 97, 'amount': Decimal(f'{i % 500}.{i % 100:02d}'),
            'paid_at': 1_795_000_000_000_000 + i * 1_000_003, 'booked_on': 20_415 + i % 30,
            **extra}

  def change(serialize, op: str, before: Optional[dict], after: Optional[dict]) -> bytes:
    return serialize({'before': before, 'after': after, 'source': source, 'op': op,
                      'ts_ms': 1})

  half = n // 2
  records = [(key_of({'payment_id': i}), change(first, 'c', None, image(i))) for i in range(half)]
  # The source table gained a column: Debezium registers a new schema and uses it from here on.
  records += [(key_of({'payment_id': i}),
               change(second, 'c', None, image(i, method=('card', 'wire')[i % 2])))
              for i in range(half, n)]
  records += [(key_of({'payment_id': i}),
               change(second, 'u', image(i), image(i, method='refund'))) for i in range(0, n, 5)]
  deleted = range(1, n, 7)
  records += [(key_of({'payment_id': i}), change(second, 'd', image(i), None)) for i in deleted]
  return records, n - len(deleted)


def job_flags(dead_letter_dir: str) -> List[str]:
  """The flags of the Avro job (beside Kafka, the FE and the credentials)."""
  return [f'--topics={TOPIC}', '--group_id=kafka-doris-demo-avro', '--format=avro',
          f'--schema_registry_url={REGISTRY_URL}', '--cdc_format=debezium',
          f'--topic_table_map={TOPIC}={TABLE}', '--create_tables',
          '--schema_evolution=add_columns', f'--dead_letter_path={dead_letter_dir}',
          '--progress_interval_secs=1']
