"""The structure is a checked contract: layers point one way, every module says its job."""

import ast
import os
import subprocess
import sys

import pytest

from tests.harness import REPO_ROOT

pytestmark = pytest.mark.unit

PRODUCT_PACKAGES = ('transforms', 'pipelines')


def test_import_contracts_hold():
  """``.importlinter``: transforms never import pipelines; the product imports no dev code;
  inside transforms the four IO packages (kafka, records, batching, stream_load) stand side by
  side on the shared ground, delivery and schema above them; the local server imports nothing
  of the product."""
  lint = os.path.join(os.path.dirname(sys.executable), 'lint-imports')
  result = subprocess.run([lint], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
  assert 'BROKEN' not in result.stdout and 'Contracts: 4 kept, 0 broken.' in result.stdout


def _product_modules():
  for package in PRODUCT_PACKAGES:
    for folder, _, files in os.walk(os.path.join(REPO_ROOT, package)):
      for name in files:
        if name.endswith('.py'):
          yield os.path.relpath(os.path.join(folder, name), REPO_ROOT)


@pytest.mark.parametrize('module', sorted(_product_modules()))
def test_every_product_module_says_its_one_job(module):
  with open(os.path.join(REPO_ROOT, module), encoding='utf-8') as handle:
    docstring = ast.get_docstring(ast.parse(handle.read()))
  assert docstring and len(docstring.split()) >= 6, f'{module}: no module docstring'
