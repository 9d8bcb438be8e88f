"""The project's imports point one way: each layer imports only the layers below it.

    compat ← contract ← evaluation ← models ← components ← pipeline ← kubeflow, benchmarks
    compat ← contract ← ingest ← components, pipeline, kubeflow, benchmarks
    compat ← contract ← serving ← benchmarks

`contract` holds what every layer shares (feature names, the serving contract, the split rules);
`ingest` reads, validates and splits raw data (the models never see raw files); `serving` is
apart: it needs nothing of the pipeline, the components or the models. Every import counts,
including those inside functions. docs/design.md's layout section shows the same graph.
"""
import ast
import os
from typing import Dict, FrozenSet, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_BELOW_MODELS = frozenset({'compat', 'contract', 'evaluation'})
# Layer → the project layers its modules may import (besides their own).
ALLOWED: Dict[str, FrozenSet[str]] = {
    'compat': frozenset(),
    'contract': frozenset({'compat'}),
    'evaluation': frozenset({'compat', 'contract'}),
    'ingest': frozenset({'compat', 'contract'}),
    'models': _BELOW_MODELS,
    'components': _BELOW_MODELS | {'models', 'ingest'},
    'pipeline': _BELOW_MODELS | {'models', 'components', 'ingest'},
    'kubeflow': _BELOW_MODELS | {'models', 'components', 'pipeline', 'ingest'},
    'serving': frozenset({'compat', 'contract'}),
    'benchmarks': _BELOW_MODELS | {'models', 'components', 'pipeline', 'serving', 'ingest'},
}


def imported_layers(source: str) -> List[Tuple[int, str]]:
  """(line, top-level name) of every absolute import in `source`."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found.extend((node.lineno, alias.name.split('.')[0]) for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found.append((node.lineno, node.module.split('.')[0]))
  return found


def violations(layer: str, path: str, source: str) -> List[str]:
  """The imports of `source` (the module at `path`, in `layer`) that reach a layer it may not."""
  return [f'{path}:{line}: {layer} imports {target}'
          for line, target in imported_layers(source)
          if target in ALLOWED and target != layer and target not in ALLOWED[layer]]


def project_modules():
  """(layer, path relative to the root, source) of every module of every layer."""
  for layer in ALLOWED:
    single = os.path.join(ROOT, layer + '.py')
    paths = [single] if os.path.isfile(single) else [
        os.path.join(directory, name)
        for directory, _, names in os.walk(os.path.join(ROOT, layer))
        for name in names if name.endswith('.py')]
    for path in sorted(paths):
      with open(path) as f:
        yield layer, os.path.relpath(path, ROOT), f.read()


def test_every_layer_exists():
  found = {layer for layer, _, _ in project_modules()}
  assert found == set(ALLOWED)


def test_imports_point_down_the_layers():
  found = [violation for module in project_modules() for violation in violations(*module)]
  assert not found, 'imports against the layering:\n' + '\n'.join(found)


def test_a_planted_upward_import_is_caught():
  planted = 'import os\n\ndef f():\n  from pipeline import configs\n  import models.towers\n'
  assert violations('serving', 'serving/planted.py', planted) == [
      'serving/planted.py:4: serving imports pipeline',
      'serving/planted.py:5: serving imports models']
  assert violations('pipeline', 'pipeline/planted.py', planted) == []
  assert violations('contract', 'contract/planted.py', 'from evaluation import metrics\n') == [
      'contract/planted.py:1: contract imports evaluation']
  assert violations('models', 'models/planted.py', 'from ingest import loaders\n') == [
      'models/planted.py:1: models imports ingest']
  assert violations('components', 'components/planted.py', 'from ingest import loaders\n') == []
  assert violations('ingest', 'ingest/planted.py', 'from evaluation import protocol\n') == [
      'ingest/planted.py:1: ingest imports evaluation']
