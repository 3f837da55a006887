"""Writes the Flex Template's ``metadata.json`` from ``pipelines.options.FLAG_SPECS``.

``FLAG_SPECS`` is the single list of the pipeline's flags; this script turns
it into the template's parameter list (name, label, help text, optional or
not, default, validation regex), so the template cannot drift from the
command line.  ``tests/templates/test_dataflow_template.py`` fails when the
committed ``metadata.json`` differs from what this script writes.

Usage (from the repository root)::

  python templates/dataflow/generate_metadata.py            # rewrite metadata.json
  python templates/dataflow/generate_metadata.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.dirname(os.path.dirname(_HERE))
if _REPO_ROOT not in sys.path:
  sys.path.insert(0, _REPO_ROOT)

from pipelines.options import FLAG_SPECS, FlagSpec  # pylint: disable=wrong-import-position

METADATA_PATH = os.path.join(_HERE, 'metadata.json')
TEMPLATE_NAME = 'Kafka to Doris/StarRocks (Stream Load)'
TEMPLATE_DESCRIPTION = (
    'Streams JSON (or Debezium/Canal/Maxwell CDC) records from Kafka topics into Apache Doris or '
    'StarRocks tables with Stream Load: per-table batching, deterministic labels (idempotent '
    'retries), dead letters, and consumer-group offsets committed only after the rows are loaded.')

# Flags the template asks for although the CLI has a default or reads them
# elsewhere: a worker in the cloud has no Kafka on localhost.
REQUIRED_IN_TEMPLATE = ('bootstrap_servers', 'topics', 'group_id', 'fe_nodes')

# Words written in capitals (or otherwise) in labels.
_LABEL_WORDS = {'fe': 'FE', 'id': 'ID', 'ca': 'CA', 'cdc': 'CDC', 'secs': '(seconds)',
                'bytes': '(bytes)', 'rows': '(rows)'}


def label_of(name: str) -> str:
  """``batch_interval_secs`` -> ``Batch interval (seconds)``."""
  words = [_LABEL_WORDS.get(word, word) for word in name.split('_')]
  text = ' '.join(words)
  return text[0].upper() + text[1:]


def default_text(spec: FlagSpec) -> Optional[str]:
  """The flag's default as a template parameter value, or None if it has none."""
  if spec.default is None or spec.default == '':
    return None
  if isinstance(spec.default, bool):
    return 'true' if spec.default else 'false'
  return str(spec.default)


def parameter_of(spec: FlagSpec) -> Dict[str, Any]:
  """One ``parameters`` entry of ``metadata.json``."""
  required = spec.name in REQUIRED_IN_TEMPLATE
  default = None if required else default_text(spec)
  help_text = spec.help
  if default is not None and not spec.secret:
    help_text = f'{help_text} Default: {default}.'
  if spec.choices:
    help_text = f'{help_text} One of: {", ".join(spec.choices)}.'
  parameter: Dict[str, Any] = {
      'name': spec.name,
      'label': label_of(spec.name),
      'helpText': help_text,
      'isOptional': not required,
  }
  if spec.regex:
    parameter['regexes'] = [spec.regex]
  if default is not None:
    parameter['defaultValue'] = default
  return parameter


def build_metadata() -> Dict[str, Any]:
  """The whole ``metadata.json`` document."""
  parameters: List[Dict[str, Any]] = [parameter_of(spec) for spec in FLAG_SPECS]
  return {
      'name': TEMPLATE_NAME,
      'description': TEMPLATE_DESCRIPTION,
      'parameters': parameters,
  }


def render() -> str:
  return json.dumps(build_metadata(), indent=2, ensure_ascii=False) + '\n'


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--check', action='store_true',
                      help='exit 1 if metadata.json is not what FLAG_SPECS gives')
  parser.add_argument('--output', default=METADATA_PATH, help='where to write')
  args = parser.parse_args(argv)
  text = render()
  if args.check:
    with open(args.output, encoding='utf-8') as handle:
      if handle.read() != text:
        print(f'{args.output} is stale: run python templates/dataflow/generate_metadata.py',
              file=sys.stderr)
        return 1
    return 0
  with open(args.output, 'w', encoding='utf-8') as handle:
    handle.write(text)
  print(f'wrote {args.output} ({len(FLAG_SPECS)} parameters)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
