"""The monitoring assets (``templates/monitoring/``) name only what the job serves, and work.

* ``alerts.yml`` passes ``promtool check rules``, its unit tests (``alerts_test.yml``, a firing
  and a quiet case for every alert) pass ``promtool test rules``, and promtool parses every
  query of the dashboard too.  promtool comes from Debian's ``prometheus`` package; without it
  these tests skip -- unless ``REQUIRE_INTEGRATION=1`` (CI), where they fail.
* ``grafana-dashboard.json`` loads as JSON, its panel ids are unique, its panels fit the grid.
* Every metric name in the rules' and the dashboard's expressions is a series of
  ``transforms/metrics.py`` -- the exact sample name Prometheus stores (a counter's ``_total``,
  a histogram's ``_bucket``/``_count``/``_sum``, a gauge's bare name) -- with label names it
  has; and a live streaming job (the CLI with ``--metrics_port``) serves each of them on
  ``/metrics`` once it has loaded rows, retried one HTTP 503 and dead-lettered one bad record.
  The job is then stopped with SIGTERM and drains.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from typing import Dict, Iterator, List, Set, Tuple

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import REPO_ROOT, pipeline_argv, start_cli
from tests.pipelines.crash import wait_for
from tests.pipelines.helpers import event_bytes
from tests.pipelines.helpers import free_port
from transforms import metrics

pytestmark = pytest.mark.e2e

MONITORING = os.path.join(REPO_ROOT, 'templates', 'monitoring')
ALERTS = os.path.join(MONITORING, 'alerts.yml')
ALERTS_TEST = os.path.join(MONITORING, 'alerts_test.yml')
DASHBOARD = os.path.join(MONITORING, 'grafana-dashboard.json')

REQUIRE_ENV = 'REQUIRE_INTEGRATION'
PROMTOOL_MISSING = 'promtool not installed: apt-get install prometheus'

# The alerts the rules must hold (the group ``kafka-to-doris``).
ALERT_NAMES = ('DorisTableStalled', 'KafkaPartitionStalled', 'KafkaConsumerLagGrowing',
               'DorisLoadFailureRate', 'DorisDeadLetterRate', 'DorisTooManyVersions',
               'DorisAuthFailures')
# Labels Prometheus adds to every scraped series (the target's), not the job's.
TARGET_LABELS = frozenset({'job', 'instance'})

# ------------------------------------------------------------------------- PromQL references

# PromQL's functions and aggregation operators (an identifier followed by "(").
PROMQL_FUNCTIONS = frozenset({
    'abs', 'absent', 'absent_over_time', 'acos', 'asin', 'atan', 'avg', 'avg_over_time',
    'bottomk', 'ceil', 'changes', 'clamp', 'clamp_max', 'clamp_min', 'count', 'count_over_time',
    'count_values', 'day_of_month', 'day_of_week', 'day_of_year', 'days_in_month', 'delta',
    'deriv', 'exp', 'floor', 'group', 'histogram_count', 'histogram_fraction',
    'histogram_quantile', 'histogram_sum', 'holt_winters', 'hour', 'idelta', 'increase',
    'irate', 'label_join', 'label_replace', 'last_over_time', 'ln', 'log10', 'log2', 'max',
    'max_over_time', 'min', 'min_over_time', 'minute', 'month', 'predict_linear',
    'present_over_time', 'quantile', 'quantile_over_time', 'rate', 'resets', 'round', 'scalar',
    'sgn', 'sort', 'sort_desc', 'sqrt', 'stddev', 'stddev_over_time', 'stdvar',
    'stdvar_over_time', 'sum', 'sum_over_time', 'time', 'timestamp', 'topk', 'vector', 'year'})
# Keywords that stand alone (set operators, modifiers, literals).
PROMQL_KEYWORDS = frozenset({'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan',
                             'group_left', 'group_right'})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r'\$(?:\{[^}]*\}|\w+)')
_RANGE = re.compile(r'\[[^\]]*\]')
_MATCHERS = re.compile(r'\{([^{}]*)\}')
_MATCHER_LABEL = re.compile(r'([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)')
_GROUPING = re.compile(r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)',
                       re.IGNORECASE)
_IDENTIFIER = re.compile(r'(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?')
_LEGEND_LABEL = re.compile(r'\{\{\s*(\w+)\s*\}\}')
_TEMPLATE_LABEL = re.compile(r'\$labels\.(\w+)')


def promql_refs(expr: str) -> Tuple[Set[str], Set[str]]:
  """The metric names and the label names an expression refers to.

  Label values and Grafana variables are dropped, then range selectors; label matchers and
  ``by``/``without``/``on``/``ignoring``/``group_*`` lists give the label names; what is left
  is functions (an identifier before "(": it must be a PromQL function, so a typo fails),
  keywords, numbers and metric names.
  """
  text = _STRING.sub('""', expr)
  text = _GRAFANA_VARIABLE.sub('', text)
  text = _RANGE.sub('', text)
  labels: Set[str] = set()
  for body in _MATCHERS.findall(text):
    labels.update(_MATCHER_LABEL.findall(body))
  text = _MATCHERS.sub(' ', text)
  for body in _GROUPING.findall(text):
    labels.update(name.strip() for name in body.split(',') if name.strip())
  text = _GROUPING.sub(' ', text)
  names: Set[str] = set()
  for name, call in _IDENTIFIER.findall(text):
    if call:
      if name.lower() not in PROMQL_FUNCTIONS:
        raise ValueError(f'{name}() is not a PromQL function, in: {expr}')
    elif name.lower() not in PROMQL_KEYWORDS:
      names.add(name)
  return names, labels


def test_promql_refs_finds_metric_and_label_names_only():
  names, labels = promql_refs(
      'histogram_quantile(0.95, sum by (table, le) (rate(a_bucket{table=~"$table", '
      'reason!="x y"}[$__rate_interval]))) / on(instance) group_left(job) b_total offset 5m '
      '> bool 1e3 and ignoring (partition) time() - c_seconds unless d or Inf')
  assert names == {'a_bucket', 'b_total', 'c_seconds', 'd'}
  assert labels == {'table', 'le', 'reason', 'instance', 'job', 'partition'}
  with pytest.raises(ValueError, match='ratte'):
    promql_refs('ratte(a_total[5m])')


# --------------------------------------------------------------------------- the assets


def _rules() -> List[dict]:
  with open(ALERTS, encoding='utf-8') as handle:
    document = yaml.safe_load(handle)
  return [rule for group in document['groups'] for rule in group['rules']]


def _dashboard() -> dict:
  with open(DASHBOARD, encoding='utf-8') as handle:
    return json.load(handle)


def _panels(dashboard: dict) -> Iterator[dict]:
  """Every panel, those inside (collapsed) rows too."""
  for panel in dashboard['panels']:
    yield panel
    yield from panel.get('panels', [])


def _expressions() -> Iterator[Tuple[str, str, Set[str]]]:
  """(where, expression, label names its text uses) for every rule and dashboard query."""
  for rule in _rules():
    texts = ' '.join(rule.get('annotations', {}).values())
    yield f'rule {rule["alert"]}', rule['expr'], set(_TEMPLATE_LABEL.findall(texts))
  for panel in _panels(_dashboard()):
    for target in panel.get('targets', []):
      yield (f'panel {panel["id"]} "{panel["title"]}" {target["refId"]}', target['expr'],
             set(_LEGEND_LABEL.findall(target.get('legendFormat', ''))))


def _used_series() -> Dict[str, Set[str]]:
  """Metric name -> label names used with it, over every rule and dashboard query."""
  used: Dict[str, Set[str]] = {}
  for _, expr, _ in _expressions():
    names, labels = promql_refs(expr)
    for name in names:
      used.setdefault(name, set()).update(labels - TARGET_LABELS - {'le'})
  return used


def _defined_series() -> Dict[str, Set[str]]:
  """The sample names transforms/metrics.py's metrics expose (as Prometheus stores them) ->
  their label names."""
  suffixes = {'counter': ('_total',), 'gauge': ('',), 'histogram': ('_bucket', '_count', '_sum'),
              'summary': ('', '_count', '_sum')}
  series: Dict[str, Set[str]] = {}
  # pylint: disable=protected-access
  # prometheus_client keeps a counter's name without "_total", and has no public accessor
  # for the label names of a metric without children.
  for value in vars(metrics).values():
    if isinstance(value, MetricWrapperBase):
      for suffix in suffixes[value._type]:
        labels = set(value._labelnames) | ({'le'} if suffix == '_bucket' else set())
        series[value._name + suffix] = labels
  return series


def test_the_rules_are_the_alerts_asked_for_with_severity_summary_and_description():
  with open(ALERTS, encoding='utf-8') as handle:
    groups = yaml.safe_load(handle)['groups']
  assert [group['name'] for group in groups] == ['kafka-to-doris']
  rules = _rules()
  assert sorted(rule['alert'] for rule in rules) == sorted(ALERT_NAMES)
  for rule in rules:
    assert rule['labels']['severity'] in ('critical', 'warning'), rule['alert']
    assert set(rule['annotations']) >= {'summary', 'description'}, rule['alert']
    assert '$labels.' in rule['annotations']['summary'], rule['alert']
  # The failure reasons the rules single out are reasons the job uses.
  reasons = set(re.findall(r'reason="(\w+)"', ' '.join(rule['expr'] for rule in rules)))
  assert reasons == {'too_many_versions', 'auth'}
  assert reasons <= set(metrics.FAILURE_REASONS)


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
  with open(ALERTS_TEST, encoding='utf-8') as handle:
    document = yaml.safe_load(handle)
  assert document['rule_files'] == ['alerts.yml']
  cases = [case for test in document['tests'] for case in test['alert_rule_test']]
  for name in ALERT_NAMES:
    assert any(case['alertname'] == name and case.get('exp_alerts') for case in cases), name
    assert any(case['alertname'] == name and not case.get('exp_alerts') for case in cases), name
    for case in cases:
      for alert in case.get('exp_alerts') or []:
        assert {'summary', 'description'} <= set(alert['exp_annotations']), case


def test_the_dashboard_loads_with_unique_panel_ids_on_the_grid_and_its_inputs():
  dashboard = _dashboard()
  assert 38 <= dashboard['schemaVersion'] <= 40
  assert [(i['name'], i['type'], i['pluginId']) for i in dashboard['__inputs']] == [
      ('DS_PROMETHEUS', 'datasource', 'prometheus')]
  variables = {v['name']: v for v in dashboard['templating']['list']}
  table = variables['table']
  assert table['definition'] == 'label_values(doris_rows_loaded_total, table)'
  assert table['query']['query'] == table['definition']
  panels = list(_panels(dashboard))
  ids = [panel['id'] for panel in panels]
  assert len(ids) == len(set(ids)), f'duplicate panel ids: {sorted(ids)}'
  cells = {}
  for panel in panels:
    grid = panel['gridPos']
    assert grid['x'] >= 0 and grid['w'] > 0 and grid['x'] + grid['w'] <= 24, panel['title']
    for x in range(grid['x'], grid['x'] + grid['w']):
      for y in range(grid['y'], grid['y'] + grid['h']):
        assert (x, y) not in cells, f'{panel["title"]} overlaps {cells[(x, y)]}'
        cells[(x, y)] = panel['title']
    if panel['type'] != 'row':
      assert panel['datasource'] == {'type': 'prometheus', 'uid': '${DS_PROMETHEUS}'}
      assert panel['targets'], panel['title']
      for target in panel['targets']:
        assert target['datasource'] == panel['datasource'], panel['title']
      refs = [target['refId'] for target in panel['targets']]
      assert len(refs) == len(set(refs)), panel['title']


def test_every_metric_and_label_the_expressions_use_is_one_the_job_defines():
  defined = _defined_series()
  for where, expr, text_labels in _expressions():
    names, labels = promql_refs(expr)
    assert names, f'{where}: no metric in {expr}'
    unknown = names - set(defined)
    assert not unknown, (f'{where}: {sorted(unknown)} not among the series of '
                         f'transforms/metrics.py: {sorted(defined)}')
    available = set().union(*(defined[name] for name in names)) | TARGET_LABELS
    assert (labels | text_labels) <= available, (
        f'{where}: labels {sorted((labels | text_labels) - available)} not on {sorted(names)}')


# ------------------------------------------------------------------------------- promtool


@pytest.fixture
def promtool() -> str:
  path = shutil.which('promtool')
  if path is None:
    if os.environ.get(REQUIRE_ENV) == '1':
      pytest.fail(f'{PROMTOOL_MISSING} ({REQUIRE_ENV}=1)', pytrace=False)
    pytest.skip(PROMTOOL_MISSING)
  return path


def _run(argv: List[str]) -> subprocess.CompletedProcess:
  return subprocess.run(argv, cwd=MONITORING, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules_and_passes_their_unit_tests(promtool):
  checked = _run([promtool, 'check', 'rules', ALERTS])
  assert checked.returncode == 0, checked.stdout + checked.stderr
  assert f'SUCCESS: {len(ALERT_NAMES)} rules found' in checked.stdout
  tested = _run([promtool, 'test', 'rules', ALERTS_TEST])
  assert tested.returncode == 0, tested.stdout + tested.stderr
  assert 'SUCCESS' in tested.stdout


def test_promtool_parses_every_dashboard_query(promtool, tmp_path):
  """Each query, Grafana's variables replaced, as a recording rule: promtool parses them all."""
  values = {'__rate_interval': '5m', '__range': '6h', '__interval': '1m'}
  rules = []
  for panel in _panels(_dashboard()):
    for target in panel.get('targets', []):
      expr = _GRAFANA_VARIABLE.sub(
          lambda m: values.get(m.group(0).strip('${}').split(':')[0], '.*'), target['expr'])
      rules.append({'record': f'dashboard:panel_{panel["id"]}_{target["refId"]}',
                    'expr': expr})
  path = tmp_path / 'dashboard_rules.yml'
  path.write_text(yaml.safe_dump({'groups': [{'name': 'dashboard', 'rules': rules}]}))
  checked = _run([promtool, 'check', 'rules', str(path)])
  assert checked.returncode == 0, checked.stdout + checked.stderr
  assert f'SUCCESS: {len(rules)} rules found' in checked.stdout


# ----------------------------------------------------------------------------- a live job

SCRAPE_POLL_SECS = 0.05


def _scrape(port: int) -> Dict[str, Set[str]]:
  """Sample name -> label names, as a Prometheus scrape of the job sees them ({} if down)."""
  try:
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5) as response:
      text = response.read().decode()
  except (urllib.error.URLError, OSError):
    return {}
  served: Dict[str, Set[str]] = {}
  for family in text_string_to_metric_families(text):
    for sample in family.samples:
      served.setdefault(sample.name, set()).update(sample.labels)
  return served


def _sample_value(port: int, name: str, **labels) -> float:
  with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5) as response:
    text = response.read().decode()
  for family in text_string_to_metric_families(text):
    for sample in family.samples:
      if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
        return sample.value
  return 0.0


def _missing(served: Dict[str, Set[str]], used: Dict[str, Set[str]]) -> List[str]:
  missing = []
  for name, labels in sorted(used.items()):
    if name not in served:
      missing.append(name)
    elif not labels <= served[name]:
      missing.append(f'{name} labels {sorted(labels - served[name])}')
  return missing


def _tail(path: str, lines: int = 40) -> str:
  with open(path, encoding='utf-8', errors='replace') as handle:
    return ''.join(handle.readlines()[-lines:])


def test_a_live_job_serves_every_metric_the_dashboard_and_the_rules_use(
    kafka_cluster, make_stream_load_server, tmp_path):
  used = _used_series()
  server = make_stream_load_server()
  # The job's first load attempt gets an HTTP 503 (reason server_error, retried under its
  # label); the last record is not JSON (a dead letter, reason invalid_json).
  server.inject_fault('http_503', times=1)
  topic = kafka_cluster.unique_topic('monitoring')
  kafka_cluster.produce(topic, event_bytes(range(20)) + [b'{"event_id": 20, not json'])
  port = free_port()
  argv = [a for a in pipeline_argv(kafka_cluster, server, [topic], f'g-{topic}',
                                   str(tmp_path / 'dead'), table='demo.events', metrics_port=port,
                                   batch_interval_secs=1, stall_timeout_secs=3, max_retries=3)
          if a != '--stop_at_end']
  log = str(tmp_path / 'job.log')
  proc = start_cli(argv, log_path=log)
  try:
    wait_for(lambda: server.query('SELECT count(*) FROM demo.events') == [(20,)],
             'the 20 rows loaded', proc=proc)
    # Every series used is served once the stall detector (every few seconds) has seen the
    # table and the partitions.
    deadline = time.monotonic() + 60
    served = _scrape(port)
    while _missing(served, used):
      assert proc.poll() is None, f'the job exited ({proc.returncode}):\n{_tail(log)}'
      assert time.monotonic() < deadline, (
          f'not served on /metrics after 60 s: {_missing(served, used)}\n{_tail(log)}')
      time.sleep(SCRAPE_POLL_SECS)  # a poll interval, not a synchronisation
      served = _scrape(port)
    assert _sample_value(port, 'doris_load_failures_total', table='demo.events',
                         reason='server_error') >= 1
    assert _sample_value(port, 'doris_dead_letters_total', table='demo.events',
                         reason='invalid_json') == 1

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, _tail(log)
    assert 'summary: drained' in _tail(log)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=60)
