"""``--format``: JSON values, or Avro / Protobuf / JSON Schema in the Confluent wire format.

``ValueFormat`` is the picklable configuration (validated once, at
construction); ``ValueFormat.decoder()`` makes, on the worker, a
``RegistryDecoder``: one ``SchemaRegistryClient`` and confluent-kafka's own
deserializers (``ProtobufDeserializer``, ``JSONDeserializer``; for Avro,
``AvroDeserializer``'s parsed writer schema read by fastavro's
``schemaless_reader``, as ``AvroDeserializer`` reads it without a subject, minus
its per-call overhead).  The framing (magic byte, schema id or GUID, Protobuf
message indexes) is read by confluent's ``dual_schema_id_deserializer``.  The
client caches schemas by id; the decoder caches,
per schema id, what it compiled from the writer schema: the converter of
logical types (``avro_schema``, ``protobuf_schema``; Protobuf: the message
class too) and the Doris column types.

Whose fault is a failure:

* the record's -- ``Reject`` (a dead letter): ``bad_wire_format`` (no
  Confluent framing: the first byte is not magic byte 0, or 1 with a schema
  GUID, or the value is shorter than the header), ``unknown_schema`` (the
  registry answers 404 for the schema id), ``undecodable`` (the bytes do not
  match the writer schema: truncated, corrupt; a JSON Schema value that
  fails validation);
* the registry's -- ``SchemaRegistryUnavailableError`` (connection refused,
  timeouts, HTTP 5xx/408/429 after the client's own retries): the bundle
  fails, no offset moves, like an unreachable FE; a long-running job
  (``keep_retrying``) tries again every ``retry.OUTAGE_RETRY_SECS`` instead;
* the configuration's -- ``SchemaRegistryAuthError`` (HTTP 401/403) and
  ``SchemaRegistryRequestError`` (any other answer): the job fails at once.

``mock://NAME`` URLs (tests, benchmarks) name one in-memory registry per
process: every client made here for the same URL shares it, as Java's
``MockSchemaRegistry`` scopes do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

import orjson

from transforms import retry
from transforms.errors import ClusterFault, CredentialsFault
from transforms.records import avro_schema, jsonschema_types, protobuf_schema
from transforms.records.numbers import LONG_NUMBER, NUMBER_CHARS, exact_loads, has_inexact_number
from transforms.records.reasons import BAD_WIRE_FORMAT, UNDECODABLE, UNKNOWN_SCHEMA, Reject

__all__ = ['ValueFormat', 'RegistryDecoder', 'VALUE_FORMATS', 'REGISTRY_FORMATS',
           'SchemaRegistryFailedError', 'SchemaRegistryUnavailableError',
           'SchemaRegistryAuthError', 'SchemaRegistryRequestError', 'registry_client',
           'require_registry_support', 'INSTALL_HINT']

_LOGGER = logging.getLogger('transforms.records')

VALUE_FORMATS = ('json', 'avro', 'protobuf', 'json_schema')
REGISTRY_FORMATS = ('avro', 'protobuf', 'json_schema')
INSTALL_HINT = "pip install '.[registry]'"
# Default client settings (a flag-built conf may override them): a hung registry must not hang
# the job (httpx waits forever without a timeout).
DEFAULT_CLIENT_CONF = {'timeout': 30}
_MAX_UNKNOWN_IDS = 10_000


class SchemaRegistryFailedError(ClusterFault, RuntimeError):
  """The registry could not answer a schema lookup: not the record's fault, the job fails."""


class SchemaRegistryUnavailableError(SchemaRegistryFailedError):
  """Connection refused, timeout, HTTP 5xx/408/429: the registry is (for now) unavailable."""


class SchemaRegistryAuthError(SchemaRegistryFailedError, CredentialsFault):
  """HTTP 401/403: the registry refused the credentials."""


class SchemaRegistryRequestError(SchemaRegistryFailedError):
  """Any other unexpected answer of the registry."""


def require_registry_support(value_format: str) -> None:
  """Checks that confluent-kafka's Schema Registry support is installed.

  Raises:
    ValueError: naming what is missing and the extra that installs it.
  """
  try:
    # pylint: disable=import-outside-toplevel,unused-import
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: F401
    if value_format == 'avro':
      from confluent_kafka.schema_registry.avro import AvroDeserializer  # noqa: F401
    elif value_format == 'protobuf':
      from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer  # noqa: F401
    elif value_format == 'json_schema':
      from confluent_kafka.schema_registry.json_schema import JSONDeserializer  # noqa: F401
  except ImportError as error:
    raise ValueError(f'--format={value_format} needs confluent-kafka\'s Schema Registry '
                     f'support, which is not installed ({error}): {INSTALL_HINT}') from None


def redacted_url(url: str) -> str:
  """``url`` without user info (credentials never go into messages)."""
  try:
    parts = urlsplit(url)
  except ValueError:
    return '<unparsable URL>'
  if parts.username is None and parts.password is None:
    return url
  host = parts.hostname or ''
  if parts.port:
    host = f'{host}:{parts.port}'
  return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclasses.dataclass(frozen=True)
class ValueFormat:
  """How Kafka values are encoded (``--format``) and where their schemas are.

  Attributes:
    name: ``json`` | ``avro`` | ``protobuf`` | ``json_schema``.
    registry: ``SchemaRegistryClient`` settings (``url``: comma list, basic
      auth, TLS), required for the registry formats, None for json.

  Raises:
    ValueError: a bad name, a missing or superfluous registry, the registry
      support not installed.
  """
  name: str = 'json'
  registry: Optional[Mapping[str, Any]] = None

  def __post_init__(self):
    if self.name not in VALUE_FORMATS:
      raise ValueError(f'--format: expected one of {"|".join(VALUE_FORMATS)}, got {self.name!r}')
    if self.name == 'json':
      if self.registry:
        raise ValueError('--format=json reads no schema registry')
      return
    if not self.registry or not self.registry.get('url'):
      raise ValueError(f'--format={self.name} needs --schema_registry_url')
    require_registry_support(self.name)
    object.__setattr__(self, 'registry', dict(self.registry))

  @property
  def uses_registry(self) -> bool:
    return self.name != 'json'

  @property
  def registry_urls(self) -> str:
    """The registry URL(s) for messages, without credentials."""
    urls = str((self.registry or {}).get('url', ''))
    return ','.join(redacted_url(u.strip()) for u in urls.split(','))

  def decoder(self, keep_retrying: bool = False, client=None,
              sleep: Callable[[float], None] = time.sleep) -> 'RegistryDecoder':
    """A decoder for this format (on the worker; not picklable)."""
    return RegistryDecoder(self, keep_retrying=keep_retrying, client=client, sleep=sleep)


# -- clients -----------------------------------------------------------------------

_MOCK_CLIENTS: Dict[str, Any] = {}
_MOCK_LOCK = threading.Lock()


def _is_mock(conf: Mapping[str, Any]) -> bool:
  return str(conf.get('url', '')).startswith('mock://')


def registry_client(conf: Mapping[str, Any]):
  """A ``SchemaRegistryClient`` for ``conf``; ``mock://`` URLs share one per process."""
  # pylint: disable=import-outside-toplevel
  from confluent_kafka.schema_registry import SchemaRegistryClient
  from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
      MockSchemaRegistryClient)
  if _is_mock(conf):
    with _MOCK_LOCK:
      client = _MOCK_CLIENTS.get(conf['url'])
      if client is None:
        client = _MOCK_CLIENTS[conf['url']] = MockSchemaRegistryClient({'url': conf['url']})
      return client
  full = dict(DEFAULT_CLIENT_CONF)
  full.update(conf)
  return SchemaRegistryClient(full)


def _no_subject(ctx, record_name):  # pylint: disable=unused-argument
  """Subject name strategy: none -- the writer schema comes by id, no rules, no lookups."""
  return None


# -- per-schema plans ------------------------------------------------------------------

class _Plan:
  """What one schema id (and Protobuf message index) compiles to; cached by the decoder."""

  __slots__ = ('deserialize', 'convert', 'schema', 'kind', '_types', '_fields')

  def __init__(self, deserialize, convert, schema, kind: str):
    self.deserialize = deserialize
    self.convert = convert
    self.schema = schema  # Avro / JSON Schema: parsed JSON; Protobuf: the Descriptor
    self.kind = kind
    self._types: Dict[bool, Dict[str, str]] = {}
    self._fields: Optional[Tuple[str, ...]] = None

  def column_types(self, envelope: bool) -> Dict[str, str]:
    """Column -> Doris type of the rows (``envelope``: of a CDC envelope's row); cached."""
    types = self._types.get(envelope)
    if types is None:
      if self.kind == 'avro':
        types = avro_schema.column_types(self.schema, envelope)
      elif self.kind == 'protobuf':
        types = protobuf_schema.column_types(self.schema, envelope)
      else:
        types = jsonschema_types.column_types(self.schema, envelope)
      self._types[envelope] = types
    return types

  def field_names(self) -> Tuple[str, ...]:
    """The top-level field names (a record key schema: the key columns)."""
    if self._fields is None:
      self._fields = tuple(self.column_types(False))
    return self._fields


def _json_value(payload: bytes) -> Any:
  """JSON Schema payloads: orjson, with long numbers kept exact (as the json format does)."""
  obj = orjson.loads(payload)
  if LONG_NUMBER in payload.translate(NUMBER_CHARS) and has_inexact_number(obj):
    return exact_loads(payload)
  return obj


class RegistryDecoder:
  """Decodes Confluent wire-format values with the registry's schemas (one per worker).

  Args:
    value_format: the format and registry settings.
    keep_retrying: a long-running job: while the registry is unavailable,
      try again every ``retry.OUTAGE_RETRY_SECS`` instead of failing.
    client: a ``SchemaRegistryClient`` to use (tests); default: one made from
      ``value_format.registry`` and closed by ``close``.
    sleep: waits between tries (tests).
  """

  def __init__(self, value_format: ValueFormat, keep_retrying: bool = False, client=None,
               sleep: Callable[[float], None] = time.sleep):
    if not value_format.uses_registry:
      raise ValueError('--format=json needs no registry decoder')
    # pylint: disable=import-outside-toplevel
    from confluent_kafka.schema_registry import SchemaRegistryError, dual_schema_id_deserializer
    from confluent_kafka.schema_registry.common._httpx_compat import httpx
    from confluent_kafka.schema_registry.error import OAuthTokenError
    from confluent_kafka.schema_registry.serde import SchemaId
    from confluent_kafka.serialization import MessageField, SerializationContext
    self.format = value_format
    self._keep_retrying = keep_retrying
    self._sleep = sleep
    self._owns_client = client is None and not _is_mock(value_format.registry)
    self._client = client if client is not None else registry_client(value_format.registry)
    self._urls = value_format.registry_urls
    self._registry_error = SchemaRegistryError
    self._transport_errors = (httpx.HTTPError, OAuthTokenError, OSError)
    self._schema_id = SchemaId
    self._read_schema_id = dual_schema_id_deserializer
    self._context = SerializationContext
    self._value_field = MessageField.VALUE
    self._key_field = MessageField.KEY
    kind = value_format.name
    if kind == 'avro':
      from confluent_kafka.schema_registry.avro import AvroDeserializer
      from confluent_kafka.schema_registry.common.avro import AVRO_TYPE
      from fastavro import schemaless_reader
      self._type = AVRO_TYPE
      self._avro = AvroDeserializer(self._client, conf={'subject.name.strategy': _no_subject})
      self._schemaless_reader = schemaless_reader
    elif kind == 'protobuf':
      from confluent_kafka.schema_registry.common.protobuf import PROTOBUF_TYPE
      self._type = PROTOBUF_TYPE
    else:
      from confluent_kafka.schema_registry.common.json_schema import JSON_TYPE
      from confluent_kafka.schema_registry.json_schema import JSONDeserializer
      self._type = JSON_TYPE
      self._json = JSONDeserializer(None, schema_registry_client=self._client,
                                    conf={'subject.name.strategy': _no_subject},
                                    json_decode=_json_value)
    self._plans: Dict[Tuple[Any, ...], _Plan] = {}
    self._unknown: Dict[Tuple[Any, ...], str] = {}  # ids the registry does not know (404)

  # -- records -----------------------------------------------------------------

  def decode(self, value: bytes, topic: str = '',
             headers: Optional[Sequence[Tuple[str, Optional[bytes]]]] = None,
             is_key: bool = False) -> Tuple[Any, _Plan]:
    """The value as plain Python data (dicts, lists, str, int, float, bool, None).

    Args:
      value: the Kafka value (or key) in the Confluent wire format.
      topic: the record's topic (for messages).
      headers: the record's headers (a ``__value_schema_id`` header may carry
        the schema id instead of the value's prefix).
      is_key: ``value`` is a record key.

    Returns:
      ``(data, plan)``: the plan is the schema id's (``column_types``).

    Raises:
      Reject: ``bad_wire_format``, ``unknown_schema``, ``undecodable``.
      SchemaRegistryFailedError: the registry could not answer.
    """
    ctx = (self._context(topic, self._key_field if is_key else self._value_field, list(headers))
           if headers else None)
    schema_id = self._schema_id(self._type)
    try:
      payload = self._read_schema_id(value, ctx, schema_id)
    except Exception as error:  # pylint: disable=broad-except  (struct.error, SerializationError)
      raise Reject(BAD_WIRE_FORMAT, f'not in the Confluent Schema Registry wire format '
                   f'(magic byte 0 or 1, schema id, payload): {_first(error)}') from None
    indexes = tuple(schema_id.message_indexes) if schema_id.message_indexes is not None else ()
    key = (schema_id.id, schema_id.guid, indexes)
    plan = self._plans.get(key)
    if plan is None:
      plan = self._plan(key, schema_id)
    what = f'schema {_id_text(schema_id)}'

    def deserialize() -> Any:
      try:
        return plan.deserialize(value, ctx, payload)
      except self._registry_error as error:  # a reference fetched while deserializing
        raise self._failure(error, what) from None
      except self._transport_errors as error:
        raise self._unavailable(error, what) from None
      except (RecursionError, MemoryError):
        raise
      except Exception as error:  # pylint: disable=broad-except  (fastavro, protobuf, jsonschema)
        raise Reject(UNDECODABLE, f'does not match its writer schema {_id_text(schema_id)}: '
                     f'{_first(error)}') from None

    data = self._through_outages(deserialize)
    try:
      return plan.convert(data), plan
    except (ValueError, TypeError, OverflowError, KeyError, ArithmeticError) as error:
      raise Reject(UNDECODABLE, f'a value of schema {_id_text(schema_id)} cannot be converted: '
                   f'{_first(error)}') from None

  def key_fields(self, key: Optional[bytes], topic: str = '') -> Tuple[str, ...]:
    """The field names of a record key's schema (the key columns), or ``()``.

    Keys that are not in the wire format, or whose schema is unknown, give ``()``.
    """
    if not key:
      return ()
    try:
      _, plan = self.decode(key, topic, is_key=True)
    except Reject:
      return ()
    return plan.field_names()

  def decode_key(self, key: Optional[bytes], topic: str = '') -> Optional[dict]:
    """A record key decoded with its schema (a Debezium delete's key), or None."""
    if not key:
      return None
    try:
      data, _ = self.decode(key, topic, is_key=True)
    except Reject:
      return None
    return data if type(data) is dict and data else None

  def close(self) -> None:
    """Closes the client's HTTP session (not a shared ``mock://`` registry)."""
    if self._owns_client and self._client is not None:
      try:
        self._client.close()
      except Exception:  # pylint: disable=broad-except  (closing is best effort)
        _LOGGER.debug('closing the schema registry client failed', exc_info=True)
    self._client = None

  # -- schemas -----------------------------------------------------------------

  def _plan(self, key: Tuple[Any, ...], schema_id) -> _Plan:
    what = f'schema {_id_text(schema_id)}'
    unknown = self._unknown.get(key)
    if unknown is not None:
      raise Reject(UNKNOWN_SCHEMA, unknown)
    fmt = 'serialized' if self.format.name == 'protobuf' else None

    def fetch() -> _Plan:
      try:
        schema = (self._client.get_schema(schema_id.id, fmt=fmt) if schema_id.id is not None
                  else self._client.get_schema_by_guid(str(schema_id.guid), fmt=fmt))
        return self._compile(schema, schema_id)
      except self._registry_error as error:
        if error.http_status_code == 404:
          detail = (f'{what} is not in the schema registry {self._urls} '
                    f'(HTTP 404, code {error.error_code})')
          if len(self._unknown) < _MAX_UNKNOWN_IDS:
            self._unknown[key] = detail
          raise Reject(UNKNOWN_SCHEMA, detail) from None
        raise self._failure(error, what) from None
      except self._transport_errors as error:
        raise self._unavailable(error, what) from None

    plan = self._through_outages(fetch)
    self._plans[key] = plan
    return plan

  def _compile(self, schema, schema_id) -> _Plan:
    kind = self.format.name
    if kind == 'avro':
      parsed = json.loads(schema.schema_str)
      convert = avro_schema.value_converter(parsed)
      # The writer schema as AvroDeserializer parses it (named references
      # resolved through the registry), read by fastavro as AvroDeserializer
      # reads it when no subject is used (no rules, no migrations, the writer
      # schema as reader schema) -- without its per-call work around that
      # (schema lookups under a lock, expanding the schema for rules it does
      # not run), which cost twice the read itself. A test holds the two equal.
      writer = self._avro._get_parsed_schema(schema)  # pylint: disable=protected-access
      if writer == 'bytes' or (isinstance(writer, dict) and writer.get('type') == 'bytes'):
        return _Plan(lambda value, ctx, payload: payload.read(), convert, parsed, kind)
      read = self._schemaless_reader
      return _Plan(lambda value, ctx, payload: read(payload, writer, None, False), convert,
                   parsed, kind)
    if kind == 'protobuf':
      # pylint: disable=import-outside-toplevel
      from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
      try:
        message_class = protobuf_schema.message_class(self._client, schema,
                                                      schema_id.message_indexes or [0])
      except self._registry_error:
        raise
      except self._transport_errors:
        raise
      except Exception as error:  # pylint: disable=broad-except  (a schema we cannot build)
        raise Reject(UNDECODABLE, f'schema {_id_text(schema_id)} or its message index '
                     f'{list(schema_id.message_indexes or [])} is not usable: '
                     f'{_first(error)}') from None
      deserializer = ProtobufDeserializer(message_class,
                                          {'subject.name.strategy': _no_subject}, self._client)
      fix = protobuf_schema.dict_converter(message_class.DESCRIPTOR)
      to_dict = protobuf_schema.to_dict
      return _Plan(lambda value, ctx, payload: deserializer(value, ctx),
                   lambda message: fix(to_dict(message)), message_class.DESCRIPTOR, kind)
    parsed = json.loads(schema.schema_str)
    json_deserializer = self._json
    return _Plan(lambda value, ctx, payload: json_deserializer(value, ctx), lambda value: value,
                 parsed, kind)

  # -- failures ------------------------------------------------------------------

  def _failure(self, error, what: str) -> SchemaRegistryFailedError:
    """A registry error answer, classified: the failure to raise."""
    status = error.http_status_code
    if status in (401, 403):
      return SchemaRegistryAuthError(
          f'schema registry {self._urls}: authentication failed fetching {what} (HTTP {status}: '
          f'{error.error_message}); check --schema_registry_basic_auth or the '
          f'SCHEMA_REGISTRY_BASIC_AUTH variable')
    if status in (408, 429) or (isinstance(status, int) and status >= 500):
      return self._unavailable(error, what)
    return SchemaRegistryRequestError(
        f'schema registry {self._urls}: unexpected answer fetching {what}: HTTP {status}, '
        f'code {error.error_code}: {error.error_message}')

  def _unavailable(self, error, what: str) -> SchemaRegistryUnavailableError:
    return SchemaRegistryUnavailableError(
        f'schema registry {self._urls} is unavailable (fetching {what}): '
        f'{type(error).__name__}: {_first(error)}')

  def _through_outages(self, fetch: Callable[[], Any]) -> Any:
    """``fetch()``; a long-running job tries again while the registry is unavailable.

    This runs for every record: the first try is a plain call (a ``Retrying`` object per
    record cost more than the decoding); only a failure enters the retry loop.
    """
    try:
      return fetch()
    except SchemaRegistryUnavailableError as error:
      if not self._keep_retrying:
        raise
      self._wait_for_registry(error)

    def away(error: BaseException) -> bool:
      return isinstance(error, SchemaRegistryUnavailableError)

    def log(attempt: retry.Attempt) -> None:
      self._log_unavailable(attempt.outcome.exception())

    return retry.through_outages(retry_on=away, sleep=self._sleep, before_sleep=log)(fetch)

  def _wait_for_registry(self, error: BaseException) -> None:
    self._log_unavailable(error)
    self._sleep(retry.OUTAGE_RETRY_SECS)

  @staticmethod
  def _log_unavailable(error: BaseException) -> None:
    _LOGGER.warning('%s; trying again in %.0f s', error, retry.OUTAGE_RETRY_SECS)


def _id_text(schema_id) -> str:
  if schema_id.id is not None:
    return f'id {schema_id.id}'
  return f'guid {schema_id.guid}'


def _first(error: BaseException) -> str:
  text = str(error).strip() or type(error).__name__
  return text.splitlines()[0][:300]
