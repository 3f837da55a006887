"""One Stream Load on the BE: headers -> transaction -> rows -> commit -> response JSON.

Mirrors ``StreamLoadAction`` of apache/doris ``be/src/http/action/stream_load.cpp`` (header
checks and their messages, ``begin_txn`` before the body, ``max_filter_ratio``, commit or
2PC pre-commit) and the response of ``StreamLoadContext::to_json``
(``be/src/runtime/stream_load/stream_load_context.cpp``): the same keys, order and types.
User-facing semantics follow
https://doris.apache.org/docs/data-operate/import/import-way/stream-load-manual,
https://doris.apache.org/docs/data-operate/delete/batch-delete-manual (merge types,
``__DORIS_DELETE_SIGN__``), https://doris.apache.org/docs/data-operate/update/partial-column-update
and, for the StarRocks flavour's ``__op`` column,
https://docs.starrocks.io/docs/loading/Load_to_Primary_Key_tables/.
"""

import dataclasses
import json
import re
import sqlite3
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import sqlglot

from stream_load_emulator import convert
from stream_load_emulator import formats
from stream_load_emulator import groupcommit
from stream_load_emulator import schema as schema_lib
from stream_load_emulator import storage as storage_lib
from stream_load_emulator import txn as txn_lib

MIB = 1024 * 1024
JSON_MAX_BODY_BYTES = 100 * MIB  # Doris streaming_load_json_max_mb
DEFAULT_MAX_BODY_BYTES = 10240 * MIB  # Doris streaming_load_max_mb
STARROCKS_OP = '__op'


class LoadFailed(Exception):
  """Ends a load with ``Status`` Fail (or another code); ``code`` is Doris's status code."""

  def __init__(self, code: str, msg: str):
    super().__init__(msg)
    self.code = code
    self.msg = msg


@dataclasses.dataclass
class LoadContext:
  """What the BE knows about one load; ``to_json`` is the response body."""
  db: str
  table: str
  label: str = ''
  comment: str = ''
  two_phase_commit: bool = False
  group_commit: bool = False  # Doris group commit (sync_mode / async_mode)
  group_commit_mode: str = ''
  merge_commit: bool = False  # StarRocks merge commit (enable_merge_commit: true)
  merge_commit_async: bool = False
  request_id: str = ''  # StarRocks merge commit: the caller's label (or a generated one)
  wait_finish_ms: int = 0
  left_merge_ms: int = 0
  txn_id: int = -1
  code: str = 'OK'  # OK, PUBLISH_TIMEOUT, LABEL_ALREADY_EXISTS, or an error code
  message: str = ''
  existing_job_status: str = ''
  total_rows: int = 0
  loaded_rows: int = 0
  filtered_rows: int = 0
  unselected_rows: int = 0
  receive_bytes: int = 0
  start: float = dataclasses.field(default_factory=time.monotonic)
  slot_start: float = dataclasses.field(default_factory=time.monotonic)
  begin_txn_ms: int = 0
  put_ms: int = 0
  read_ms: int = 0
  write_ms: int = 0
  commit_ms: int = 0
  load_ms: int = 0
  error_url: str = ''
  txn: Optional[txn_lib.Txn] = None

  @property
  def ok(self) -> bool:
    return self.code in ('OK', 'PUBLISH_TIMEOUT')

  def fail(self, code: str, msg: str) -> None:
    self.code = code
    self.message = msg

  @property
  def status(self) -> str:
    return {'OK': 'Success', 'PUBLISH_TIMEOUT': 'Publish Timeout',
            'LABEL_ALREADY_EXISTS': 'Label Already Exists'}.get(self.code, 'Fail')

  def to_dict(self, flavor: str = 'doris') -> Dict[str, Any]:
    """The response fields in ``StreamLoadContext::to_json`` order.

    StarRocks's BE writes the same object without ``Comment``/``TwoPhaseCommit``, with
    ``StreamLoadPlanTimeMs`` for ``StreamLoadPutTimeMs`` and messages without the
    ``[CODE]`` prefix. A Doris group commit load has ``GroupCommit: true`` instead of
    ``TwoPhaseCommit`` and no ``BeginTxnTimeMs`` / ``CommitAndPublishTimeMs``
    (``be/src/runtime/stream_load/stream_load_context.cpp``).
    """
    doris = flavor == 'doris'
    if self.merge_commit and not doris:
      return self._merge_commit_dict()
    d: Dict[str, Any] = {'TxnId': self.txn_id, 'Label': self.label}
    if doris:
      d['Comment'] = self.comment
      if self.group_commit:
        d['GroupCommit'] = True
      else:
        d['TwoPhaseCommit'] = 'true' if self.two_phase_commit else 'false'
    d['Status'] = self.status
    if self.code == 'LABEL_ALREADY_EXISTS':
      d['ExistingJobStatus'] = self.existing_job_status
    if self.code == 'OK':
      d['Message'] = 'OK'
    elif doris and not self.message.startswith('['):
      d['Message'] = '[%s]%s' % (self.code, self.message)
    else:
      d['Message'] = self.message
    d['NumberTotalRows'] = self.total_rows
    d['NumberLoadedRows'] = self.loaded_rows
    d['NumberFilteredRows'] = self.filtered_rows
    d['NumberUnselectedRows'] = self.unselected_rows
    d['LoadBytes'] = self.receive_bytes
    d['LoadTimeMs'] = self.load_ms
    if not self.group_commit:
      d['BeginTxnTimeMs'] = self.begin_txn_ms
    d['StreamLoadPutTimeMs' if doris else 'StreamLoadPlanTimeMs'] = self.put_ms
    d['ReadDataTimeMs'] = self.read_ms
    d['WriteDataTimeMs'] = self.write_ms
    if not self.group_commit:
      d['CommitAndPublishTimeMs'] = self.commit_ms
    if self.error_url:
      d['ErrorURL'] = self.error_url
    return d

  def _merge_commit_dict(self) -> Dict[str, Any]:
    """StarRocks merge commit: ``Label`` is the merged transaction's, the caller's label is
    ``RequestId``, and no row counters (StarRocks ``StreamLoadContext::to_json`` with
    ``enable_batch_write``, as its ``stream_load_test.cpp`` ``merge_commit_response``
    expects)."""
    return {'TxnId': self.txn_id, 'Label': self.label, 'Status': self.status,
            'Message': 'OK' if self.code == 'OK' else self.message,
            'RequestId': self.request_id, 'LoadBytes': self.receive_bytes,
            'LoadTimeMs': self.load_ms, 'ReadDataTimeMs': self.read_ms, 'PendingTimeMs': 0,
            'WaitPlanTimeMs': self.put_ms, 'WriteDataTimeMs': self.write_ms,
            'WaitFinishTimeMs': self.wait_finish_ms, 'LeftMergeTimeMs': self.left_merge_ms}

  def to_json(self, flavor: str = 'doris') -> bytes:
    # rapidjson's PrettyWriter: 4-space indent, then the BE appends a newline.
    return (json.dumps(self.to_dict(flavor), indent=4, ensure_ascii=False) + '\n').encode()


class Headers:
  """Case-insensitive view of the request headers Stream Load reads."""

  def __init__(self, items):
    self._d = {}
    for k, v in items:
      self._d[k.lower()] = v.strip()

  def get(self, name: str, default: str = '') -> str:
    return self._d.get(name.lower(), default)

  def flag(self, name: str) -> bool:
    return self.get(name).lower() == 'true'

  def __contains__(self, name):
    return name.lower() in self._d

  def items(self):
    return self._d.items()


def _split_top_level(text: str, sep: str = ',') -> List[str]:
  parts, depth, quote, cur = [], 0, None, []
  for ch in text:
    if quote:
      cur.append(ch)
      if ch == quote:
        quote = None
      continue
    if ch in '\'"`':
      quote = ch
    elif ch == '(':
      depth += 1
    elif ch == ')':
      depth -= 1
    elif ch == sep and depth == 0:
      parts.append(''.join(cur).strip())
      cur = []
      continue
    cur.append(ch)
  if ''.join(cur).strip():
    parts.append(''.join(cur).strip())
  return parts


_ASSIGN_RE = re.compile(r'^\s*`?([A-Za-z_][\w]*)`?\s*=(?!=)\s*(.+)$', re.S)


def parse_columns(text: str) -> List[Tuple[str, Optional[str]]]:
  """``k1, k2, v=k1*2`` -> ``[('k1', None), ('k2', None), ('v', 'k1*2')]``."""
  out = []
  for part in _split_top_level(text):
    m = _ASSIGN_RE.match(part)
    if m:
      out.append((m.group(1), m.group(2).strip()))
    else:
      out.append((part.strip().strip('`'), None))
  return out


class _Evaluator:
  """Evaluates Doris expressions (columns mappings, ``where``, ``delete``) on one row."""

  def __init__(self, names: List[str], exprs: List[str]):
    self.names = names
    self._conn = sqlite3.connect(':memory:')
    selects = []
    for e in exprs:
      try:
        selects.append(sqlglot.parse_one(e, dialect='doris').sql(dialect='sqlite'))
      except sqlglot.errors.ParseError as err:
        raise LoadFailed('ANALYSIS_ERROR', 'TStatus: errCode = 2, detailMessage = '
                         'Syntax error in expression %s: %s' % (e, err)) from err
    inner = ', '.join('? AS "%s"' % n.replace('"', '""') for n in names) or '1 AS _x'
    self._sql = 'SELECT %s FROM (SELECT %s)' % (', '.join(selects), inner)

  def __call__(self, row: Dict[str, Any]) -> tuple:
    values = [row.get(n.lower()) for n in self.names]
    values = [json.dumps(v) if isinstance(v, (dict, list)) else v for v in values]
    try:
      return self._conn.execute(self._sql, values).fetchone()
    except sqlite3.Error as err:
      raise ValueError('expression failed: %s' % err) from err


def _src_text(rec: formats.Record) -> str:
  """The source line shown in the error log (built only for rejected rows)."""
  return rec.src or json.dumps(rec.value, ensure_ascii=False, default=str)


def _truthy(value: Any) -> bool:
  if isinstance(value, str):
    return value.strip().lower() in ('1', 'true')
  return bool(value) and value is not None


def max_filter_ratio(h: Headers) -> float:
  """``max_filter_ratio`` as Doris reads it (``strtod``: garbage reads as 0)."""
  m = re.match(r'\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?', h.get('max_filter_ratio'))
  return float(m.group(0)) if m else 0.0


def skip_lines(h: Headers, flavor: str = 'doris') -> int:
  """Header lines to skip: csv_with_names(_and_types) skip their 1 (2) lines, ignoring
  ``skip_lines``, as Doris does; StarRocks reads ``skip_header``."""
  if flavor == 'starrocks':
    try:
      return max(int(h.get('skip_header') or 0), 0)
    except ValueError:
      return 0
  fmt = h.get('format').lower()
  if fmt == 'csv_with_names':
    return 1
  if fmt == 'csv_with_names_and_types':
    return 2
  try:
    return max(int(h.get('skip_lines') or 0), 0)
  except ValueError:
    return 0


GROUP_COMMIT_MODES = ('sync_mode', 'async_mode', 'off_mode')
# be.conf group_commit_memory_rows_for_max_filter_ratio: max_filter_ratio is only checked for
# group commit loads of at most this many rows (Doris group commit manual, "Limitations").
GROUP_COMMIT_MEMORY_ROWS_FOR_MAX_FILTER_RATIO = 10000
# Doris table property defaults (group commit manual: 10 s, 64 MB; current master's
# Config.group_commit_data_bytes_default_value is 134217728).
DEFAULT_GROUP_COMMIT_INTERVAL_MS = 10000
DEFAULT_GROUP_COMMIT_DATA_BYTES = 64 * MIB
# Headers that are not load parameters (left out of StarRocks's "homogeneous" merge key).
_TRANSPORT_HEADERS = frozenset({
    'authorization', 'label', 'content-length', 'transfer-encoding', 'expect', 'host',
    'user-agent', 'accept', 'accept-encoding', 'connection', 'content-type', 'keep-alive'})


def _parse_bool(value: str) -> Optional[bool]:
  v = value.strip().lower()
  if v in ('true', '1'):
    return True
  if v in ('false', '0'):
    return False
  return None


class Loader:
  """Runs loads against a catalog, storage and transaction manager (one per server)."""

  def __init__(self, catalog: schema_lib.Catalog, storage: storage_lib.Storage,
               txns: txn_lib.TxnManager, flavor: str = 'doris',
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, count_only: bool = False,
               max_error_logs: int = 1000,
               group_commit_interval_ms: Optional[float] = None,
               group_commit_data_bytes: Optional[int] = None,
               on_group_commit=None):
    self.catalog = catalog
    self.storage = storage
    self.txns = txns
    self.flavor = flavor
    self.max_body_bytes = max_body_bytes
    self.count_only = count_only
    self.error_logs: Dict[str, str] = {}
    self._max_error_logs = max_error_logs
    self.group_commit_interval_ms = (DEFAULT_GROUP_COMMIT_INTERVAL_MS
                                     if group_commit_interval_ms is None
                                     else group_commit_interval_ms)
    self.group_commit_data_bytes = (DEFAULT_GROUP_COMMIT_DATA_BYTES
                                    if group_commit_data_bytes is None
                                    else group_commit_data_bytes)
    self.group_commit = groupcommit.GroupCommitManager(txns, storage, count_only,
                                                       on_commit=on_group_commit)

  # --- phase 1: headers, before the body ----------------------------------------------------

  def on_header(self, ctx: LoadContext, h: Headers, content_length: Optional[int],
                chunked: bool = False) -> None:
    """Validates headers and begins the transaction; sets ``ctx`` to Fail on errors."""
    ctx.label = h.get('label')
    ctx.comment = h.get('comment')
    ctx.two_phase_commit = h.get('two_phase_commit') == 'true'
    if self.flavor == 'doris':
      self._group_commit_header(ctx, h, content_length, chunked)
    else:
      self._merge_commit_header(ctx, h)
    if not ctx.label and not ctx.group_commit and not ctx.merge_commit:
      ctx.label = str(uuid.uuid4())
    fmt = self.format_of(h, self.flavor)
    if fmt is None:
      raise LoadFailed('INTERNAL_ERROR', 'unknown data format, format=%s' % h.get('format'))
    compress = h.get('compress_type').lower() if self.flavor == 'doris' else (
        h.get('compression').lower())
    if compress and compress not in ('gz', 'gzip'):
      raise LoadFailed('INTERNAL_ERROR', 'unknown compress type, compress_type=%s'
                       % h.get('compress_type'))
    if content_length is not None:
      json_limit = min(JSON_MAX_BODY_BYTES, self.max_body_bytes)
      if fmt == 'json' and not h.flag('read_json_by_line') and content_length > json_limit:
        raise LoadFailed('INTERNAL_ERROR', 'The size of this batch exceed the max size [%d]  '
                         'of json type data  data [ %d ]. Split the file, or use '
                         '\'read_json_by_line\'' % (json_limit, content_length))
      if content_length > self.max_body_bytes:
        raise LoadFailed('INTERNAL_ERROR', 'body exceed max size: %d, data: %d'
                         % (self.max_body_bytes, content_length))
    if h.get('timeout'):
      try:
        int(h.get('timeout'))
      except ValueError as e:
        raise LoadFailed('INVALID_ARGUMENT', 'Invalid timeout format, stoi') from e
    begin = time.monotonic()
    self._check_table(ctx)
    if ctx.group_commit or ctx.merge_commit:
      # No transaction of its own: the load joins the table's open merged transaction
      # (stream_load.cpp: ``if (!ctx->group_commit) begin_txn``).
      self._check_headers(h, self.flavor)
      return
    if not schema_lib.LABEL_RE.match(ctx.label):
      raise LoadFailed('ANALYSIS_ERROR', 'TStatus: errCode = 2, detailMessage = Label format '
                       'error. regex: ^[-_A-Za-z0-9:]{1,128}$, label: %s' % ctx.label)
    try:
      ctx.txn = self.txns.begin(ctx.db, ctx.table, ctx.label)
    except txn_lib.LabelAlreadyExists as e:
      ctx.existing_job_status = e.job_status
      if self.flavor == 'starrocks':
        raise LoadFailed(e.code, 'Label [%s] has already been used.' % ctx.label) from e
      raise LoadFailed(e.code, e.detail) from e
    ctx.txn_id = ctx.txn.txn_id
    ctx.begin_txn_ms = int((time.monotonic() - begin) * 1000)
    self._check_headers(h, self.flavor)

  @staticmethod
  def _group_commit_header(ctx: LoadContext, h: Headers, content_length: Optional[int],
                           chunked: bool) -> None:
    """Doris 2.1+ ``StreamLoadAction::_handle_group_commit`` / ``_can_group_commit``."""
    mode = h.get('group_commit')
    if not mode:
      return
    if mode.lower() not in GROUP_COMMIT_MODES:
      raise LoadFailed('INVALID_ARGUMENT',
                       'group_commit can only be [async_mode, sync_mode, off_mode]')
    mode = mode.lower()
    if mode == 'off_mode' or (not content_length and not chunked):
      return  # off_mode, or an empty body: an ordinary load
    if chunked:
      ctx.label = ''  # "allow chunked stream load in flink": the label is dropped
    update_mode = h.get('unique_key_update_mode').upper()
    if (h.flag('partial_columns') or h.get('partitions') or h.get('temporary_partitions') or
        ctx.two_phase_commit or update_mode in ('UPDATE_FIXED_COLUMNS',
                                                'UPDATE_FLEXIBLE_COLUMNS')):
      return  # these fall back to an ordinary load (no error)
    if ctx.label:
      raise LoadFailed('INVALID_ARGUMENT', 'label and group_commit can\'t be set at the same '
                       'time')
    ctx.group_commit = True
    ctx.group_commit_mode = mode

  @staticmethod
  def _merge_commit_header(ctx: LoadContext, h: Headers) -> None:
    """StarRocks ``enable_merge_commit`` (stream_load.cpp ``_on_header``; the interval and
    parallel checks are ``BatchWriteMgr.getOrCreateJob``'s)."""
    value = h.get('enable_merge_commit')
    if not value:
      return
    enabled = _parse_bool(value)
    if enabled is None:
      raise LoadFailed('INVALID_ARGUMENT', 'Invalid parameter enable_merge_commit. The value '
                       'must be bool type, but is %s' % value)
    if not enabled:
      return
    ctx.merge_commit = True
    # "The server automatically generates labels for transactions. They will be ignored if
    # specified." The caller's label comes back as RequestId.
    ctx.request_id = ctx.label or str(uuid.uuid4())
    ctx.label = ''
    ctx.merge_commit_async = bool(_parse_bool(h.get('merge_commit_async') or 'false'))
    for header, what in (('merge_commit_interval_ms', 'interval'),
                         ('merge_commit_parallel', 'parallel')):
      raw = h.get(header)
      try:
        number = int(raw)
      except ValueError:
        number = None
      if number is None or number <= 0:
        raise LoadFailed('INVALID_ARGUMENT', 'Batch write %s must be set positive, but is %s'
                         % (what, raw or 'null'))

  def _check_table(self, ctx: LoadContext) -> schema_lib.Table:
    if ctx.db not in self.catalog.databases:
      raise LoadFailed('ANALYSIS_ERROR', 'TStatus: errCode = 7, detailMessage = unknown '
                       'databases, dbName=%s' % ctx.db)
    table = self.catalog.table(ctx.db, ctx.table)
    if table is None:
      raise LoadFailed('ANALYSIS_ERROR', 'TStatus: errCode = 7, detailMessage = unknown '
                       'table, tableName=%s' % ctx.table)
    return table

  @staticmethod
  def format_of(h: Headers, flavor: str = 'doris') -> Optional[str]:
    fmt = h.get('format', 'csv').lower() or 'csv'
    if fmt in ('csv', 'csv_with_names', 'csv_with_names_and_types', 'hive_text'):
      return 'csv'
    if fmt == 'json':
      return 'json'
    if fmt == 'arrow' and flavor == 'doris':
      return 'arrow'  # Doris >= 2.1 (apache/doris#26709, #28098)
    return None

  @staticmethod
  def _check_headers(h: Headers, flavor: str = 'doris') -> None:
    strict = h.get('strict_mode').lower()
    if strict and strict not in ('true', 'false'):
      raise LoadFailed('INVALID_ARGUMENT', 'Invalid strict mode format. Must be bool type')
    for name in ('enclose', 'escape'):
      # stream_load.cpp _process_put: "enclose must be single-char, actually is {}"
      if h.get(name) and len(h.get(name).encode('utf-8')) != 1:
        raise LoadFailed('INVALID_ARGUMENT', '%s must be single-char, actually is %s'
                         % (name, h.get(name)))
    delimiter = 'line_delimiter' if flavor == 'doris' else 'row_delimiter'
    for name in ('column_separator', delimiter):
      if h.get(name):
        try:
          formats.convert_separator(h.get(name))
        except formats.SeparatorError as e:
          raise LoadFailed('ANALYSIS_ERROR', 'TStatus: errCode = 2, detailMessage = %s'
                           % e) from e
    merge = h.get('merge_type').upper()
    if merge:
      if merge not in ('APPEND', 'DELETE', 'MERGE'):
        raise LoadFailed('INVALID_ARGUMENT', 'Invalid merge type %s' % h.get('merge_type'))
      if merge == 'MERGE' and not h.get('delete'):
        raise LoadFailed('INVALID_ARGUMENT', 'Excepted DELETE ON clause when merge type is '
                         'MERGE.')
      if merge != 'MERGE' and h.get('delete'):
        raise LoadFailed('INVALID_ARGUMENT', 'Not support DELETE ON clause when merge type '
                         'is not MERGE.')

  def abort(self, ctx: LoadContext, reason: str) -> None:
    if ctx.txn is not None and ctx.txn.status == txn_lib.PREPARE:
      self.txns.abort(ctx.txn, reason)

  # --- phase 2: the body --------------------------------------------------------------------

  def run(self, ctx: LoadContext, h: Headers, body: Optional[bytes], counted_rows: int,
          error_log_base: str, publish_timeout: bool = False) -> None:
    """Reads ``body`` (or takes ``counted_rows`` in count-only mode), writes, commits."""
    if ctx.group_commit or ctx.merge_commit:
      return self._run_merged(ctx, h, body, counted_rows, error_log_base)
    table = self._check_table(ctx)  # a DROP TABLE may have run since the load began
    write_start = time.monotonic()
    if body is None:
      ctx.total_rows = ctx.loaded_rows = counted_rows
      apply = None
    else:
      ops, partial, seq_table, errors = self.parse_rows(ctx, table, h, body)
      apply = None if self.count_only else (
          lambda: self.storage.apply(seq_table, ops, partial=partial))
      if ctx.filtered_rows:
        ctx.error_url = self.save_error_log(error_log_base, errors)
      ratio = max_filter_ratio(h)
      selected = ctx.total_rows - ctx.unselected_rows
      if ctx.filtered_rows > 0 and selected > 0 and ctx.filtered_rows / selected > ratio:
        raise LoadFailed('DATA_QUALITY_ERROR', 'too many filtered rows')
    ctx.write_ms = int((time.monotonic() - write_start) * 1000)
    ctx.txn.apply = apply
    commit_start = time.monotonic()
    try:
      if ctx.two_phase_commit:
        self.txns.precommit(ctx.txn)
      else:
        self.txns.commit(ctx.txn, visible=not publish_timeout)
    except txn_lib.TxnError as e:
      raise LoadFailed(e.code, e.detail) from e
    if publish_timeout and not ctx.two_phase_commit:
      ctx.fail('PUBLISH_TIMEOUT', 'transaction commit successfully, BUT data will be visible '
               'later')
    ctx.commit_ms = int((time.monotonic() - commit_start) * 1000)
    return None

  def _run_merged(self, ctx: LoadContext, h: Headers, body: Optional[bytes],
                  counted_rows: int, error_log_base: str) -> None:
    """Group commit (Doris) / merge commit (StarRocks): the rows join the table's open
    merged transaction; sync callers wait for its commit, async ones return at once (Doris:
    after the WAL write)."""
    table = self._check_table(ctx)
    write_start = time.monotonic()
    ops, partial, seq_table = None, False, table
    if body is None:
      ctx.total_rows = ctx.loaded_rows = counted_rows
    else:
      ops, partial, seq_table, errors = self.parse_rows(ctx, table, h, body)
      if self.count_only:
        ops = None
      if ctx.filtered_rows:
        ctx.error_url = self.save_error_log(error_log_base, errors)
    ratio = max_filter_ratio(h)
    selected = ctx.total_rows - ctx.unselected_rows
    if (ctx.group_commit and ctx.filtered_rows > 0 and selected > 0 and
        ctx.total_rows <= GROUP_COMMIT_MEMORY_ROWS_FOR_MAX_FILTER_RATIO and
        ctx.filtered_rows / selected > ratio):
      raise LoadFailed('DATA_QUALITY_ERROR', 'too many filtered rows')
    member = groupcommit.Member(ops=ops, table=seq_table, partial=partial,
                                total=ctx.total_rows, loaded=ctx.loaded_rows,
                                filtered=ctx.filtered_rows, unselected=ctx.unselected_rows,
                                nbytes=ctx.receive_bytes, max_filter_ratio=ratio,
                                request=ctx.request_id)
    if ctx.group_commit:
      props = table.properties
      interval_ms = float(props.get('group_commit_interval_ms') or
                          self.group_commit_interval_ms)
      data_bytes = int(props.get('group_commit_data_bytes') or self.group_commit_data_bytes)
      key = ('group_commit', ctx.db, ctx.table)
      batch = self.group_commit.join(key, ctx.db, ctx.table, member, interval_ms, data_bytes,
                                     groupcommit.doris_label, 'group_commit')
      sync = ctx.group_commit_mode == 'sync_mode'
    else:
      params = tuple(sorted((k.lower(), v) for k, v in h.items()
                            if k.lower() not in _TRANSPORT_HEADERS))
      key = ('merge_commit', ctx.db, ctx.table, params)
      batch = self.group_commit.join(
          key, ctx.db, ctx.table, member, float(h.get('merge_commit_interval_ms')), None,
          groupcommit.starrocks_label, 'merge_commit', validate=groupcommit.data_quality)
      sync = not ctx.merge_commit_async
    ctx.label, ctx.txn_id = batch.label, batch.txn_id
    ctx.left_merge_ms = int(max(batch.deadline - time.monotonic(), 0) * 1000)
    ctx.write_ms = int((time.monotonic() - write_start) * 1000)
    if not sync:
      return None
    wait_start = time.monotonic()
    timeout = float(h.get('timeout')) if h.get('timeout').isdigit() else 600.0
    if not batch.done.wait(max(timeout, batch.interval_ms / 1000.0 * 2)):
      raise LoadFailed('TIMEOUT', 'wait for the merged commit of %s timed out' % batch.label)
    ctx.wait_finish_ms = int((time.monotonic() - wait_start) * 1000)
    if self.flavor == 'doris':
      ctx.write_ms += ctx.wait_finish_ms  # the doc's sync example: WriteDataTimeMs ~ interval
    if batch.error is not None:
      raise LoadFailed(*batch.error)
    return None

  def save_error_log(self, base: str, errors: List[str]) -> str:
    hi, lo = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    name = '__shard_%d/error_log_insert_stmt_%s-%s_%s_%s' % (int(hi[:2], 16) % 64, hi, lo, hi,
                                                             lo)
    if len(self.error_logs) >= self._max_error_logs:
      self.error_logs.pop(next(iter(self.error_logs)))
    self.error_logs[name] = ''.join(errors)
    return '%s/api/_load_error_log?file=%s' % (base, name)

  def _reader(self, h: Headers):
    fmt = self.format_of(h, self.flavor)
    if fmt == 'json':
      try:
        return formats.JsonReader(h.flag('read_json_by_line'), h.flag('strip_outer_array'),
                                  h.get('jsonpaths') or None, h.get('json_root') or None)
      except ValueError as e:
        raise LoadFailed('INVALID_ARGUMENT', str(e)) from e
    if fmt == 'arrow':
      return None

    def separator(name: str, default: bytes) -> bytes:
      return formats.convert_separator(h.get(name)) if h.get(name) else default
    enclose = h.get('enclose').encode('utf-8')[0] if h.get('enclose') else None
    escape = h.get('escape').encode('utf-8')[0] if h.get('escape') else None
    if self.flavor == 'starrocks':
      return formats.StarRocksCsvReader(separator('column_separator', b'\t'),
                                        separator('row_delimiter', b'\n'), enclose, escape,
                                        skip_lines(h, 'starrocks'), h.flag('trim_space'))
    return formats.CsvReader(separator('column_separator', b'\t'),
                             separator('line_delimiter', b'\n'), enclose, escape,
                             h.flag('trim_double_quotes'), skip_lines(h))

  def _err(self, reason: str, src: str) -> str:
    """One error-log line: Doris ``RuntimeState::append_error_msg_to_file`` writes
    ``Reason: <why>. src line [<row>]; ``, StarRocks ``Error: <why>. Row: <row>``."""
    if self.flavor == 'starrocks':
      return 'Error: %s. Row: %s\n' % (reason, src)
    return 'Reason: %s. src line [%s]; \n' % (reason, src)

  def parse_rows(self, ctx: LoadContext, table: schema_lib.Table, h: Headers, body: bytes):
    """Parses, maps, converts and filters rows into ``ctx``'s counters.

    Returns:
      ``(ops, partial, table_for_write, error log lines)`` where ops are
      ``(UPSERT|DELETE, column names, values)`` in load order.
    """
    reader = self._reader(h)
    fmt = self.format_of(h, self.flavor)
    strict = h.flag('strict_mode')
    partial = h.flag('partial_columns') or (
        self.flavor == 'starrocks' and h.get('partial_update').lower() == 'true')
    merge = h.get('merge_type').upper() or 'APPEND'
    spec = parse_columns(h.get('columns')) if h.get('columns') else []
    hidden = [c.strip() for c in h.get('hidden_columns').split(',') if c.strip()]
    plain_names = [n for n, e in spec if e is None]
    exprs = [(n, e) for n, e in spec if e is not None]
    if not plain_names:
      plain_names = [c.name for c in table.columns] + hidden
    source_names = [n.lower() for n in plain_names]
    expr_eval = _Evaluator(plain_names, [e for _, e in exprs]) if exprs else None
    where_eval = (_Evaluator([c.name for c in table.columns], [h.get('where')])
                  if h.get('where') else None)
    delete_eval = (_Evaluator(plain_names + [n for n, _ in exprs], [h.get('delete')])
                   if merge == 'MERGE' else None)
    seq_col = h.get('function_column.sequence_col') or table.sequence_col
    if seq_col and (not table.is_unique or table.column(seq_col) is None):
      raise LoadFailed('ANALYSIS_ERROR', 'TStatus: errCode = 2, detailMessage = There is no '
                       'sequence column in the table %s' % table.name)
    seq_table = table
    if seq_col and seq_col != table.sequence_col:
      seq_table = dataclasses.replace(table, properties=dict(
          table.properties, **{'function_column.sequence_col': seq_col}))
    unique = table.is_unique
    converters = {c.name: convert.make_converter(c) for c in table.columns}
    if partial:
      named = {n.lower() for n in plain_names} | {n.lower() for n, _ in exprs}
      if not h.get('columns') and fmt in ('json', 'arrow'):
        named = None  # decided per row by the JSON keys (first row wins, as Doris plans once)
      dest_cols = None if named is None else [
          c for c in table.columns if c.is_key or c.name.lower() in named]
    else:
      dest_cols = list(table.columns)
    known_names = set(source_names) | {c.name.lower() for c in table.columns} | {
        schema_lib.DELETE_SIGN.lower(), STARROCKS_OP}
    key_cache: Dict[tuple, bool] = {}
    names_of: Dict[int, tuple] = {}
    del_from, del_cols = None, None
    keep_alive: List[list] = []
    has_columns = bool(h.get('columns'))
    ops: List[Tuple[str, list]] = []
    errors: List[str] = []
    n_plain = len(plain_names)
    if fmt == 'arrow':
      records = self._arrow_records(body, plain_names, known_names)
    else:
      records = reader.read(body)
    err = self._err
    for rec in records:
      ctx.total_rows += 1
      if rec.error:
        ctx.filtered_rows += 1
        errors.append(err(rec.error, rec.src))
        continue
      value = rec.value
      if isinstance(value, dict):
        keys = tuple(value)
        lowered = key_cache.get(keys)
        if lowered is None:
          lowered = key_cache[keys] = all(k == k.lower() for k in keys)
        src = dict(value) if lowered else {k.lower(): v for k, v in value.items()}
        if has_columns:
          src = {n: src.get(n) for n in source_names if n in src}
        if known_names.isdisjoint(src):
          ctx.filtered_rows += 1
          errors.append(err(formats.ALL_NULL, _src_text(rec)))
          continue
      else:
        if fmt == 'csv' and len(value) != n_plain:
          ctx.filtered_rows += 1
          errors.append(err(reader.column_count_error(rec.raw or value, n_plain),
                            _src_text(rec)))
          continue
        src = {n: v for n, v in zip(source_names, value)}
      if expr_eval is not None:
        try:
          for (name, _), v in zip(exprs, expr_eval(src)):
            src[name.lower()] = v
        except ValueError as e:
          ctx.filtered_rows += 1
          errors.append(err(str(e), _src_text(rec)))
          continue
      is_delete = merge == 'DELETE'
      if merge == 'MERGE':
        try:
          is_delete = _truthy(delete_eval(src)[0])
        except ValueError as e:
          ctx.filtered_rows += 1
          errors.append(err(str(e), _src_text(rec)))
          continue
      elif unique and schema_lib.DELETE_SIGN.lower() in src:
        is_delete = _truthy(src[schema_lib.DELETE_SIGN.lower()])
      if table.keys_type == schema_lib.PRIMARY and STARROCKS_OP in src:
        op = src[STARROCKS_OP]
        is_delete = str(op).strip().lower() in ('1', 'delete')
      cols = dest_cols
      if cols is None:
        cols = [c for c in table.columns if c.is_key or c.name.lower() in src]
        dest_cols = cols
      if is_delete:
        if del_from is not cols:
          del_from, del_cols = cols, [c for c in cols if c.is_key or (
              seq_col and c.name.lower() == seq_col.lower())]
        cols = del_cols
      row, reason = [], None
      for col in cols:
        key = col.name.lower()
        if key in src:
          raw = src[key]
        elif col.has_default:
          raw = col.default
        else:
          raw = None
        ok, stored, reason = convert.convert(converters[col.name], col, raw, strict)
        if not ok:
          break
        row.append(stored)
      if reason is not None:
        ctx.filtered_rows += 1
        errors.append(err(reason, _src_text(rec)))
        continue
      if where_eval is not None and not is_delete:
        named_row = {c.name.lower(): v for c, v in zip(cols, row)}
        try:
          selected = _truthy(where_eval(named_row)[0])
        except ValueError as e:
          ctx.filtered_rows += 1
          errors.append(err(str(e), _src_text(rec)))
          continue
        if not selected:
          ctx.unselected_rows += 1
          continue
      if is_delete and not unique:
        if merge != 'APPEND':
          raise LoadFailed('ANALYSIS_ERROR', 'TStatus: errCode = 2, detailMessage = load by '
                           'MERGE or DELETE need to upgrade table to support batch delete.')
        is_delete = False
      names = names_of.get(id(cols))
      if names is None:
        names = names_of[id(cols)] = tuple(c.name for c in cols)
        keep_alive.append(cols)  # ids stay unique while the list lives
      ops.append((storage_lib.DELETE if is_delete else storage_lib.UPSERT, names, row))
    ctx.loaded_rows = ctx.total_rows - ctx.filtered_rows - ctx.unselected_rows
    return ops, partial, seq_table, errors

  @staticmethod
  def _arrow_records(body: bytes, block_names: List[str], known_names) -> Iterator[
      formats.Record]:
    """Arrow rows as dict records; a field that is no load column fails the load like
    ``ArrowStreamReader::get_next_block`` (``block->get_by_name`` throws)."""
    try:
      names, rows = formats.read_arrow(body)
    except formats.ArrowFormatError as e:
      raise LoadFailed('INTERNAL_ERROR', str(e)) from e
    for name in names:
      if name.lower() not in known_names:
        raise LoadFailed('INTERNAL_ERROR', 'Failed to convert from arrow to block: No such '
                         'name in Block, name=%s, block_names=%s'
                         % (name, ', '.join(block_names)))
    return (formats.Record(row, None, '') for row in rows)
