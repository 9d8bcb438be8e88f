"""Shared fixtures: a small generated data set written in the documented CSV schema, the shared
MovieLens 100K copy, and the one rule for tests whose environment lacks what they need.

A test that needs something the environment may lack (a data set beside the checkout, a tool
beside the interpreter) is skipped where it is missing, but fails when the environment variable
`CI` is `true`, so that CI never loses that coverage silently. Mark such a test
`@pytest.mark.requires(condition, reason='...')`, or take the `shared_movielens` fixture.
"""
import os
from pathlib import Path

import pytest

from ingest import movielens_100k
from ingest import synthetic
from exported_models import export_dirs, trained  # noqa: F401  (session fixtures)
import input_writers

# The shared copy beside the checkout (`../shared/data/movielens-100k`); never committed.
SHARED_MOVIELENS = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'movielens-100k'


def in_ci() -> bool:
  return os.environ.get('CI') == 'true'


def missing(reason: str) -> None:
  """Ends the running test for a missing requirement: skipped, or failed under CI=true."""
  if in_ci():
    pytest.fail(f'{reason} (CI=true: required, not skipped)', pytrace=False)
  pytest.skip(reason)


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'requires(condition, reason): skip the test when condition is false, '
      'fail it instead under CI=true')


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  """Before any fixture is set up: the `requires` marks' verdict (see the module docstring)."""
  for mark in item.iter_markers(name='requires'):
    condition, = mark.args
    if not condition:
      missing(mark.kwargs['reason'])


@pytest.fixture(scope='session')
def shared_movielens() -> Path:
  """The shared MovieLens 100K directory (skipped without it; a failure under CI=true)."""
  if not (SHARED_MOVIELENS / movielens_100k.RATINGS_FILE).exists():
    missing(f'no shared MovieLens 100K copy at {SHARED_MOVIELENS}')
  return SHARED_MOVIELENS


@pytest.fixture(scope='session')
def synthetic_dataset():
  return synthetic.generate(num_users=60, num_items=150, seed=0)


@pytest.fixture(scope='session')
def synthetic_csv_dir(tmp_path_factory, synthetic_dataset):
  return str(input_writers.write_csv(synthetic_dataset, tmp_path_factory.mktemp('synthetic_csv')))
