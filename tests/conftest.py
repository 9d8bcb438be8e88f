"""Shared fixtures: a small generated data set written in the documented CSV schema."""
import os

import pytest

from ingest import synthetic
from exported_models import export_dirs, trained  # noqa: F401  (session fixtures)
import input_writers

MOVIELENS_100K = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data',
                              'movielens-100k')


@pytest.fixture(scope='session')
def synthetic_dataset():
  return synthetic.generate(num_users=60, num_items=150, seed=0)


@pytest.fixture(scope='session')
def synthetic_csv_dir(tmp_path_factory, synthetic_dataset):
  return str(input_writers.write_csv(synthetic_dataset, tmp_path_factory.mktemp('synthetic_csv')))
