"""Which versions of which models are served: polling, loading, atomic swaps, labels, status.

Each poll finds the ready version directories of every model (`versions.StableVersions`), picks
the ones its version policy serves, loads and warms up the new ones, then swaps the model's
{version: Servable} map in one assignment and retires the versions no longer served. A request
holds the Servable it resolved, so it finishes on the version it started on; a retired version
closes when its last request ends. A version that fails to load is reported in the status
(END with its error) and not retried until its directory changes.
"""
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from absl import logging
import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.config import model_server_config_pb2

from contract import warmup
from serving import errors
from serving import servable as servable_lib
from serving import versions as versions_lib

State = get_model_status_pb2.ModelVersionStatus.State
ServableFactory = Callable[[str, int, str], servable_lib.Servable]


class _Model:
  """A configured model: its version directories, served versions, labels and states."""

  def __init__(self, config: model_server_config_pb2.ModelConfig):
    self.config = config
    self.name = config.name
    self.labels = dict(config.version_labels)
    self.versions = versions_lib.StableVersions(config.base_path)
    self.serving: Dict[int, servable_lib.Servable] = {}  # replaced, never mutated
    self.latest: Optional[servable_lib.Servable] = None
    self.states: Dict[int, Tuple[int, grpc.StatusCode, str]] = {}
    self.failed: Dict[int, versions_lib.Fingerprint] = {}


class ModelManager:
  """Serves the models of a ModelServerConfig from their base paths."""

  def __init__(self, config: model_server_config_pb2.ModelServerConfig,
               servable_factory: ServableFactory, poll_wait_seconds: float = 1.0):
    self._models = {model.name: _Model(model) for model in config.model_config_list.config}
    self._factory = servable_factory
    self._poll_wait_seconds = poll_wait_seconds
    self._states_lock = threading.Lock()
    self._config_lock = threading.Lock()  # a reload waits for the poll in progress
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  @property
  def model_names(self) -> List[str]:
    return sorted(self._models)

  def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
    """Applies a new config: labels at once, policies at the next poll; models that are new
    or moved to another base path start afresh, models no longer listed are unloaded."""
    with self._config_lock:
      self._reload(config)

  def _reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
    models = {}
    for model_config in config.model_config_list.config:
      model = self._models.get(model_config.name)
      if model is None or model.config.base_path != model_config.base_path:
        models[model_config.name] = _Model(model_config)
      else:
        model.config, model.labels = model_config, dict(model_config.version_labels)
        models[model_config.name] = model
    dropped = [model for name, model in self._models.items() if models.get(name) is not model]
    self._models = models
    for model in dropped:
      serving, model.serving, model.latest = model.serving, {}, None
      for servable in serving.values():
        servable.retire()
      logging.info('%s: removed from the config', model.name)

  def start(self, first_poll_delay_seconds: float = 0.2) -> None:
    """Loads what is ready now (two scans, `first_poll_delay_seconds` apart, so a directory
    being copied is not taken for a finished one), then polls in a background thread."""
    self.poll()
    time.sleep(first_poll_delay_seconds)
    self.poll()
    if self._poll_wait_seconds > 0:
      self._thread = threading.Thread(target=self._poll_loop, name='version-poller', daemon=True)
      self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread:
      self._thread.join()
    for model in self._models.values():
      serving, model.serving, model.latest = model.serving, {}, None
      for servable in serving.values():
        servable.retire()

  def _poll_loop(self) -> None:
    while not self._stop.wait(self._poll_wait_seconds):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except
        logging.exception('Version poll failed; serving continues with the loaded versions')

  def poll(self) -> None:
    """One round: load what the policies now ask for, swap, retire what they dropped."""
    with self._config_lock:
      for model in self._models.values():
        self._poll_model(model)

  def _poll_model(self, model: _Model) -> None:
    ready = model.versions.poll()
    loaded: Dict[int, servable_lib.Servable] = {}
    while True:  # a version that fails to load leaves the choice to the policy among the rest
      candidates = [version for version, path in ready.items()
                    if model.failed.get(version) != versions_lib.fingerprint(path)]
      wanted = versions_lib.select(model.config.model_version_policy, candidates)
      new = sorted(wanted - set(model.serving) - set(loaded), reverse=True)
      if not new:
        break
      for version in new:
        servable = self._load(model, version, ready[version])
        if servable is None:
          model.failed[version] = versions_lib.fingerprint(ready[version])
        else:
          loaded[version] = servable
    dropped = [servable for version, servable in {**model.serving, **loaded}.items()
               if version not in wanted]
    if not loaded and not dropped:
      return
    serving = {version: servable for version, servable in {**model.serving, **loaded}.items()
               if version in wanted}
    # The swap: requests resolve against the new map from here on.
    model.serving, model.latest = serving, serving[max(serving)] if serving else None
    for servable in dropped:
      self._set_state(model, servable.version, State.UNLOADING)
      servable.retire()
      self._set_state(model, servable.version, State.END)
      logging.info('%s: version %d no longer served', model.name, servable.version)

  def _load(self, model: _Model, version: int, path: str) -> Optional[servable_lib.Servable]:
    self._set_state(model, version, State.LOADING)
    started = time.time()
    try:
      servable = self._factory(model.name, version, path)
      replayed = servable.warm_up(warmup.read_warmup_requests(path))
    except errors.ServingError as error:
      message = f'warmup request failed: {error.message}'
      self._set_state(model, version, State.END, error.code, message)
      logging.error('%s: version %d failed to load: %s', model.name, version, message)
      return None
    except Exception as error:  # pylint: disable=broad-except
      code = (errors.from_tensorflow(error).code if isinstance(error, tf.errors.OpError)
              else grpc.StatusCode.UNKNOWN)
      self._set_state(model, version, State.END, code, str(error))
      logging.error('%s: version %d failed to load: %s', model.name, version, error)
      return None
    self._set_state(model, version, State.AVAILABLE)
    logging.info('%s: loaded version %d from %s in %.1f s (%d warmup requests)', model.name,
                 version, path, time.time() - started, replayed)
    return servable

  def _set_state(self, model: _Model, version: int, state: int,
                 code: grpc.StatusCode = grpc.StatusCode.OK, message: str = '') -> None:
    with self._states_lock:
      model.states[version] = (state, code, message)

  def acquire(self, spec: model_pb2.ModelSpec) -> servable_lib.Servable:
    """The servable a request's model_spec names, registered as in flight (call `release`)."""
    model = self._models.get(spec.name)
    choice = spec.WhichOneof('version_choice')
    if choice == 'version_label':
      if model is None or spec.version_label not in model.labels:
        raise errors.invalid_argument(
            f'Unrecognized servable version label: {spec.version_label}')
    while True:
      if model is None:
        raise errors.not_found(f'Servable not found for request: Latest({spec.name})')
      if choice is None:
        servable = model.latest
        if servable is None:
          raise errors.not_found(f'Servable not found for request: Latest({spec.name})')
      else:
        version = (spec.version.value if choice == 'version'
                   else model.labels[spec.version_label])
        servable = model.serving.get(version)
        if servable is None:
          raise errors.not_found(
              f'Servable not found for request: Specific({spec.name}, {version})')
      if servable.try_acquire():
        return servable
      # Retired between the lookup and now: the new map is already in place; look again.

  def status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
    """TF Serving's GetModelStatus: every known version's state, or the requested one's."""
    model = self._models.get(spec.name)
    with self._states_lock:
      states = dict(model.states) if model else {}
    if spec.HasField('version'):
      if spec.version.value not in states:
        raise errors.not_found(
            f'Could not find version {spec.version.value} of model {spec.name}')
      states = {spec.version.value: states[spec.version.value]}
    elif not states:
      raise errors.not_found(f'Could not find any versions of model {spec.name}')
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in sorted(states, reverse=True):
      state, code, message = states[version]
      status = response.model_version_status.add(version=version, state=state)
      status.status.error_code = code.value[0]
      status.status.error_message = message
    return response
