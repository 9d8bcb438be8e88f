"""The models to serve: a ModelServerConfig text proto, or one model from flags.

`serving/models.config` names container paths (`/models/student`); `rewrite_base_paths` maps
them onto a local directory, e.g. `/models` -> `outputs/serving`.
"""
import os
from typing import Optional

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


def load_config_file(path: str) -> model_server_config_pb2.ModelServerConfig:
  """Parses a ModelServerConfig text proto (raises ValueError naming the file on bad input)."""
  with open(path) as config_file:
    text = config_file.read()
  config = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as error:
    raise ValueError(f'{path}: {error}') from error
  if config.WhichOneof('config') != 'model_config_list':
    raise ValueError(f'{path}: expected a model_config_list')
  return config


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
  """The config `--model_name`/`--model_base_path` stand for: latest version of one model."""
  config = model_server_config_pb2.ModelServerConfig()
  model = config.model_config_list.config.add()
  model.name = name
  model.base_path = base_path
  model.model_platform = 'tensorflow'
  return config


def rewrite_base_paths(config: model_server_config_pb2.ModelServerConfig,
                       rewrite: Optional[str]) -> model_server_config_pb2.ModelServerConfig:
  """Replaces the prefix FROM of every base_path by TO, for `rewrite` = 'FROM=TO'."""
  if not rewrite:
    return config
  old, sep, new = rewrite.partition('=')
  if not sep or not old:
    raise ValueError(f'base path rewrite must look like FROM=TO, got {rewrite!r}')
  old = old.rstrip('/')
  for model in config.model_config_list.config:
    if model.base_path == old or model.base_path.startswith(old + '/'):
      model.base_path = os.path.abspath(new + model.base_path[len(old):])
  return config


def validate(config: model_server_config_pb2.ModelServerConfig) -> None:
  """Raises ValueError for configs TF Serving would refuse."""
  names = [model.name for model in config.model_config_list.config]
  if not names:
    raise ValueError('the config serves no model')
  duplicates = sorted({name for name in names if names.count(name) > 1})
  if duplicates:
    raise ValueError(f'models configured twice: {duplicates}')
  for model in config.model_config_list.config:
    if not model.name or not model.base_path:
      raise ValueError(f'every model needs a name and a base_path: {model}')
    if model.model_platform not in ('', 'tensorflow'):
      raise ValueError(f'model {model.name}: only the tensorflow platform is served, got '
                       f'{model.model_platform!r}')
