"""Kafka records -> rows bound for Doris/StarRocks tables.

``routing`` (where rows go), ``cdc`` (Debezium, Canal, Maxwell envelopes),
``numbers`` (exact decimals), ``reasons`` (dead-letter and skip codes),
``parser`` (``RecordParser``, pure) and ``transform`` (``ParseRecords``).
"""

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
    'parse_topic_table_map',
]
