"""Security: the password stays secret; credentials go only where they belong; TLS works.

* The password never appears in the CLI's output (logs, summary, errors), in metrics, in dead
  letters or in the text of exceptions (``str``, ``repr`` and formatted tracebacks with their
  causes), whatever goes wrong: retries, rejected rows, a BE that is down, a wrong password.
* ``Authorization`` is sent only to the configured FE nodes and the BEs they redirect to; an FE
  that is not configured sees nothing, and the error log (``ErrorURL``) is fetched without it.
* TLS: https FE URLs with ``--ca_bundle`` load against the local server with a self-signed
  certificate (trustme); without the CA bundle the run fails at start (exit code 2).
"""

import base64
import logging
import traceback
import urllib.parse

import orjson
import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli, run_in_process
from tests.pipelines.helpers import assert_events_exactly_once, event_bytes
from transforms.stream_load import StreamLoadClient, StreamLoadConfig
from transforms.stream_load.errors import StreamLoadError

pytestmark = pytest.mark.reliability

# Distinctive, and with characters that need quoting in a URL (the FE's redirect carries it).
PASSWORD = 'Zq7-pa55w0rd:with@odd#chars'
WRONG_PASSWORD = 'Wr0ng-Zq7-guess:xyz'
USER = 'root'


def _secret_forms(password):
  """The password as it could leak: raw, URL-quoted, and inside a Basic auth header."""
  return {
      password,
      urllib.parse.quote(password, safe=''),
      urllib.parse.quote(password),
      base64.b64encode(f'{USER}:{password}'.encode()).decode(),
  }


def assert_no_secret(text, password=PASSWORD, where=''):
  for form in _secret_forms(password):
    assert form not in text, f'the password ({form!r}) appears in {where}'


def _argv(kafka, server, topic, tmp_path, password=PASSWORD, **flags):
  argv = pipeline_argv(kafka, server, [topic], f'g-{topic}', str(tmp_path / 'dead'), **flags)
  return [a for a in argv if not a.startswith('--password=')] + [f'--password={password}']


def _produce_with_bad_rows(kafka, topic, n=400):
  values = event_bytes(range(n))
  values.insert(10, orjson.dumps({'event_id': 'not-a-number'}))  # rejected by the server
  values.insert(20, b'{broken json')                             # rejected by the parser
  kafka.produce(topic, values)


def test_the_password_is_not_in_cli_output_metrics_dead_letters_or_errors(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(password=PASSWORD, num_bes=2)
  topic = kafka_cluster.unique_topic('secret')
  _produce_with_bad_rows(kafka_cluster, topic)
  # Retries (5xx, a reset, a refused BE connection) and rejected rows all log something.
  server.inject_fault('http_500', times=2)
  server.inject_fault('reset_mid_body', times=1)
  server.inject_fault('too_many_versions', times=1)
  result = run_cli(_argv(kafka_cluster, server, topic, tmp_path, table='demo.events',
                         batch_rows=50, max_retries=6), timeout_secs=180)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'stream load retry' in result.stderr  # the retries were logged ...
  assert_no_secret(result.stdout + result.stderr, where='the CLI output')
  letters = read_dead_letters(str(tmp_path / 'dead'))
  assert len(letters) == 2
  assert_no_secret(orjson.dumps(letters).decode(), where='the dead letters')
  assert server.query('SELECT count(*) FROM demo.events') == [(400,)]


def test_the_password_is_not_in_debug_logs_metrics_or_the_run_summary(
    kafka_cluster, make_stream_load_server, tmp_path, caplog):
  import prometheus_client
  caplog.set_level(logging.DEBUG)
  server = make_stream_load_server(password=PASSWORD)
  topic = kafka_cluster.unique_topic('metrics')
  _produce_with_bad_rows(kafka_cluster, topic)
  server.inject_fault('http_503', times=1)
  summary = run_in_process(_argv(kafka_cluster, server, topic, tmp_path, table='demo.events',
                                 batch_rows=100))
  assert summary.totals['rows_loaded'] == 400
  assert 'stream load' in caplog.text  # the loads were logged (at INFO) ...
  assert_no_secret(caplog.text, where='the logs (DEBUG level, every logger)')
  assert_no_secret(prometheus_client.generate_latest().decode(), where='the Prometheus metrics')
  assert_no_secret(repr(summary.totals) + '\n'.join(summary.lines()), where='the run summary')
  assert_no_secret(orjson.dumps(read_dead_letters(str(tmp_path / 'dead'))).decode(),
                   where='the dead letters')


def test_a_wrong_password_fails_at_start_without_echoing_it(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(password=PASSWORD)
  topic = kafka_cluster.unique_topic('wrongpw')
  kafka_cluster.produce(topic, event_bytes(range(10)))
  result = run_cli(_argv(kafka_cluster, server, topic, tmp_path, password=WRONG_PASSWORD,
                         table='demo.events'), timeout_secs=120)
  assert result.returncode == 2
  assert 'refused the credentials' in result.stderr
  assert_no_secret(result.stdout + result.stderr, password=WRONG_PASSWORD, where='the CLI output')
  assert_no_secret(result.stdout + result.stderr, where='the CLI output')


def _exception_texts(error):
  return '\n'.join([str(error), repr(error),
                    ''.join(traceback.format_exception(type(error), error, error.__traceback__))])


def test_the_password_is_not_in_the_text_of_load_exceptions(make_stream_load_server):
  server = make_stream_load_server(password=PASSWORD, num_bes=1)
  body = b'{"event_id": 1}\n'
  config = StreamLoadConfig(fe_nodes=tuple(server.fe_urls), user=USER, password=PASSWORD,
                            max_retries=1, backoff_initial_secs=0.01, backoff_max_secs=0.05)
  assert_no_secret(repr(config) + str(config), where='repr(StreamLoadConfig)')
  texts = []
  with StreamLoadClient(config) as client:
    # Retries exhausted against a BE that is down (the FE redirects there with user:password@).
    server.inject_fault('be_down', node=0)
    with pytest.raises(StreamLoadError) as down:
      client.load('demo.events', body, 'sec-down-1', rows=1)
    texts.append(_exception_texts(down.value))
    server.clear_faults()
    # A 500 from the BE.
    server.inject_fault('http_500', times=5)
    with pytest.raises(StreamLoadError) as http_500:
      client.load('demo.events', body, 'sec-500-1', rows=1)
    texts.append(_exception_texts(http_500.value))
    server.clear_faults()
    # Rejected data (the error log is fetched into the exception).
    with pytest.raises(StreamLoadError) as rejected:
      client.load('demo.events', b'{"event_id": "x"}\n', 'sec-bad-1', rows=1)
    texts.append(_exception_texts(rejected.value))
  wrong = StreamLoadConfig(fe_nodes=tuple(server.fe_urls), user=USER, password=WRONG_PASSWORD,
                           max_retries=0)
  with StreamLoadClient(wrong) as client:
    with pytest.raises(StreamLoadError) as denied:
      client.load('demo.events', body, 'sec-denied-1', rows=1)
    texts.append(_exception_texts(denied.value))
  for text in texts:
    assert_no_secret(text, where='an exception')
    assert_no_secret(text, password=WRONG_PASSWORD, where='an exception')


def test_authorization_goes_only_to_configured_fes_and_the_bes_they_redirect_to(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(password=PASSWORD, num_fes=2, num_bes=2)
  topic = kafka_cluster.unique_topic('auth')
  _produce_with_bad_rows(kafka_cluster, topic)
  argv = _argv(kafka_cluster, server, topic, tmp_path, table='demo.events', batch_rows=100)
  # Only fe0 is configured; fe1 exists but must never be contacted.
  argv = [a for a in argv if not a.startswith('--fe_nodes=')] + [f'--fe_nodes={server.fe_urls[0]}']
  run_in_process(argv)
  assert server.query('SELECT count(*) FROM demo.events') == [(400,)]
  log = server.request_log
  assert {r['node'] for r in log} <= {'fe0', 'be0', 'be1'}
  assert 'fe1' not in {r['node'] for r in log}
  # Loads went to BEs only after the FE redirected there (each BE load follows an FE probe).
  be_loads = [r for r in log if r['node'].startswith('be') and r['path'].endswith('_stream_load')]
  fe_loads = [r for r in log if r['node'] == 'fe0' and r['path'].endswith('_stream_load')]
  assert be_loads and len(be_loads) <= len(fe_loads)
  assert all(r['had_authorization'] for r in be_loads + fe_loads)
  # Requests outside the Stream Load path (the error log of rejected rows) carry no credentials.
  others = [r for r in log if r['node'].startswith('be') and not r['path'].endswith('_stream_load')]
  assert others, 'the rejected row should have made the client fetch its error log'
  assert not any(r['had_authorization'] for r in others)


@pytest.fixture(scope='module')
def tls_files(tmp_path_factory):
  import trustme  # the test extra: TLS is a capability the README claims
  ca = trustme.CA()
  cert = ca.issue_cert('127.0.0.1', 'localhost')
  directory = tmp_path_factory.mktemp('tls')
  ca_path, cert_path, key_path = (str(directory / name)
                                  for name in ('ca.pem', 'cert.pem', 'key.pem'))
  ca.cert_pem.write_to_path(ca_path)
  cert.cert_chain_pems[0].write_to_path(cert_path)
  cert.private_key_pem.write_to_path(key_path)
  return ca_path, cert_path, key_path


def test_tls_with_a_ca_bundle_loads_every_row_once(kafka_cluster, make_stream_load_server,
                                                   tmp_path, tls_files):
  ca_path, cert_path, key_path = tls_files
  server = make_stream_load_server(password=PASSWORD, tls_cert=cert_path, tls_key=key_path)
  assert all(url.startswith('https://') for url in server.fe_urls + server.be_urls)
  topic = kafka_cluster.unique_topic('tls')
  # One row the server rejects: its error log is fetched over https too.
  kafka_cluster.produce(topic, event_bytes(range(500)) + [orjson.dumps({'event_id': 'x'})])
  result = run_cli(_argv(kafka_cluster, server, topic, tmp_path, table='demo.events',
                         batch_rows=100, ca_bundle=ca_path), timeout_secs=180)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_events_exactly_once(server, list(range(500)))
  assert {r['node'] for r in server.request_log} >= {'fe0', 'be0'}
  letters = read_dead_letters(str(tmp_path / 'dead'))
  assert len(letters) == 1 and 'event_id' in letters[0]['reason']  # the fetched error log
  assert_no_secret(result.stdout + result.stderr, where='the CLI output')


def test_tls_without_the_ca_bundle_fails_at_start(kafka_cluster, make_stream_load_server,
                                                  tmp_path, tls_files):
  _, cert_path, key_path = tls_files
  server = make_stream_load_server(password=PASSWORD, tls_cert=cert_path, tls_key=key_path)
  topic = kafka_cluster.unique_topic('tls-no-ca')
  kafka_cluster.produce(topic, event_bytes(range(10)))
  result = run_cli(_argv(kafka_cluster, server, topic, tmp_path, table='demo.events'),
                   timeout_secs=120)
  assert result.returncode == 2, result.stderr[-2000:]
  assert 'SSLError' in result.stderr and 'no FE reachable' in result.stderr
  assert server.loads == []


def test_the_password_can_come_from_the_environment_instead_of_the_command_line(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(password=PASSWORD)
  topic = kafka_cluster.unique_topic('envpw')
  kafka_cluster.produce(topic, event_bytes(range(50)))
  argv = [a for a in _argv(kafka_cluster, server, topic, tmp_path, table='demo.events')
          if not a.startswith('--password')]
  assert_no_secret(' '.join(argv), where='the command line')
  result = run_cli(argv, env={'STREAM_LOAD_PASSWORD': PASSWORD}, timeout_secs=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert_events_exactly_once(server, list(range(50)))
  assert_no_secret(result.stdout + result.stderr, where='the CLI output')


def test_a_pipeline_failure_reports_the_cause_without_the_password(
    kafka_cluster, make_stream_load_server, tmp_path):
  server = make_stream_load_server(password=PASSWORD)
  topic = kafka_cluster.unique_topic('fails')
  kafka_cluster.produce(topic, [b'{broken'] + event_bytes(range(20)))
  not_a_directory = tmp_path / 'dead-letters-here'
  not_a_directory.write_text('a file where the dead-letter directory should be')
  argv = [a for a in _argv(kafka_cluster, server, topic, tmp_path, table='demo.events')
          if not a.startswith('--dead_letter_path=')]
  result = run_cli(argv + [f'--dead_letter_path={not_a_directory}'], timeout_secs=180)
  assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
  assert 'error: the pipeline failed' in result.stderr
  assert_no_secret(result.stdout + result.stderr, where='the output of a failed run')
  # The dead letter could not be written, so its record's offset (partition 0, offset 0) is not
  # committed: a fixed rerun reads it again.  Loaded rows of the other partitions may be.
  assert kafka_cluster.committed(f'g-{topic}', topic).get(0, 0) == 0
