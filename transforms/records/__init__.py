"""Kafka records -> rows bound for Doris/StarRocks tables.

``routing`` (where rows go), ``cdc`` (Debezium, Canal, Maxwell envelopes),
``numbers`` (exact decimals), ``reasons`` (dead-letter and skip codes),
``formats`` (``--format``: JSON, or Avro / Protobuf / JSON Schema with a
schema registry; ``logical``, ``avro_schema``, ``protobuf_schema``,
``jsonschema_types`` convert their values and map their types),
``parser`` (``RecordParser``, pure) and ``transform`` (``ParseRecords``).
"""

from transforms.records.formats import (SchemaRegistryAuthError, SchemaRegistryFailedError,
                                        SchemaRegistryUnavailableError, ValueFormat)
from transforms.records.parser import CDC_FORMATS, DEFAULT_MAX_RECORD_BYTES, ParsedChunk, RecordParser
from transforms.records.routing import Routing, parse_topic_table_map
from transforms.records.transform import ParseRecords

__all__ = [
    'CDC_FORMATS',
    'DEFAULT_MAX_RECORD_BYTES',
    'ParseRecords',
    'ParsedChunk',
    'RecordParser',
    'Routing',
    'SchemaRegistryAuthError',
    'SchemaRegistryFailedError',
    'SchemaRegistryUnavailableError',
    'ValueFormat',
    'parse_topic_table_map',
]
