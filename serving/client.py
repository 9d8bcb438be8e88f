"""gRPC client of the served recommenders (TF Serving or `serving.server`), library and CLI.

    python -m serving.client --target 127.0.0.1:8500 recommend 42 --history 50 172 -k 10
    python -m serving.client recommend new-visitor --history 50 172 -k 10
    python -m serving.client score 42 50 172
    python -m serving.client --model teacher metadata
    python -m serving.client status
    python -m serving.client recommend 42 --model-dir outputs/serving/student   # with titles
    python -m serving.client recommend 42 --items data/items.csv --json
    python -m serving.client recommend 42 --history 50 172 --items data/items.csv --reasons

`recommend` works for a user id the model has never seen (a new user): the id falls into the
model's OOV bucket, and the history (and side features) carry the query, so give the items the
user has interacted with, oldest first; without a history a new user gets what the OOV bucket
alone ranks first. History items are never recommended back.

`recommend` shows each item's title, year and genres beside its id and score when it knows them:
from the served model's catalogue file (`--model-dir`, the model's base directory: the file of
the version that answered, `contract.catalogue`) or from the data's `items.csv` (`--items`);
`--json` prints the answer as one JSON object. With `--reasons` it asks the model's
`recommend_with_reasons` signature instead of `recommend` and says beside each item which of the
history items led to it ("because you watched ..."), where the model names one
(`reason_item_ids`, `contract.signatures`); without it the request is `recommend`, the one
production clients send, which computes no reasons.

Retries UNAVAILABLE with exponential backoff (only that code: the others would fail again) and
turns every failed call into a one-line error that names the code or what it means.
"""
import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from contract import catalogue as catalogue_lib
from contract import requests
from contract import signatures
from contract import tensor_codec
from contract import versions

STATE_NAMES = get_model_status_pb2.ModelVersionStatus.State.Name
MAX_DETAILS_LENGTH = 1000  # characters of a server's message shown in an error


def _one_line(details: str) -> str:
  """A server's message on one line: whitespace runs as one space, other unprintable characters
  (e.g. from a quoted input that is not text) escaped, at most MAX_DETAILS_LENGTH characters."""
  text = ''.join(char if char.isprintable() else char.encode('unicode_escape').decode('ascii')
                 for char in ' '.join((details or '').split()))  # TF's messages span lines
  if len(text) > MAX_DETAILS_LENGTH:
    text = f'{text[:MAX_DETAILS_LENGTH]}... ({len(text) - MAX_DETAILS_LENGTH} more characters)'
  return text


class ServingClientError(Exception):
  """A failed call, with the gRPC code and a message that says what to check."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code


@dataclasses.dataclass
class Recommendations:
  item_ids: List[str]
  scores: List[float]
  version: int
  # Per item, the history item that led to it ('' for none); None when the answer carries no
  # reasons (asked without them, through `recommend`).
  reason_item_ids: Optional[List[str]] = None


class ServingClient:
  """Calls one model on one server; `version` or `version_label` pins a version."""

  def __init__(self, target: str = '127.0.0.1:8500', model: str = 'student',
               version: Optional[int] = None, version_label: Optional[str] = None,
               deadline_s: float = 5.0, retries: int = 3, backoff_s: float = 0.1,
               channel_options: Sequence = ()):
    if version is not None and version_label:
      raise ValueError('give a version or a version label, not both')
    self.target = target
    self.model = model
    self.version = version
    self.version_label = version_label
    self.deadline_s = deadline_s
    self.retries = retries
    self.backoff_s = backoff_s
    self._channel = grpc.insecure_channel(target, options=list(channel_options))
    self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def close(self) -> None:
    self._channel.close()

  def __enter__(self) -> 'ServingClient':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _fill_spec(self, spec, signature: Optional[str] = None) -> None:
    spec.name = self.model
    if signature:
      spec.signature_name = signature
    if self.version is not None:
      spec.version.value = self.version
    elif self.version_label:
      spec.version_label = self.version_label

  def _describe(self) -> str:
    pinned = (f' version {self.version}' if self.version is not None else
              f' label {self.version_label!r}' if self.version_label else '')
    return f'model {self.model!r}{pinned} at {self.target}'

  def _call(self, method, request):
    """Calls with the deadline; retries UNAVAILABLE; raises ServingClientError."""
    for attempt in range(self.retries + 1):
      try:
        return method(request, timeout=self.deadline_s)
      except grpc.RpcError as error:
        code, details = error.code(), error.details()
        if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
          time.sleep(self.backoff_s * 2 ** attempt)
          continue
        raise ServingClientError(code, self._message(code, details, attempt + 1)) from None
    raise AssertionError('unreachable')

  def _message(self, code: grpc.StatusCode, details: str, attempts: int) -> str:
    details = _one_line(details)
    if code == grpc.StatusCode.NOT_FOUND:
      return f'not found: {self._describe()} is not served ({details})'
    if code == grpc.StatusCode.INVALID_ARGUMENT:
      return f'invalid request to {self._describe()}: {details}'
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
      return f'no answer from {self._describe()} within the {self.deadline_s:g} s deadline'
    if code == grpc.StatusCode.UNAVAILABLE:
      return f'server {self.target} unavailable after {attempts} attempts: {details}'
    return f'{code.name} from {self._describe()}: {details}'

  def predict(self, signature: str, inputs: Dict[str, object]) -> predict_pb2.PredictResponse:
    """Predict on a signature; inputs are TensorProtos or numpy arrays."""
    request = predict_pb2.PredictRequest()
    self._fill_spec(request.model_spec, signature)
    for name, value in inputs.items():
      proto = value if hasattr(value, 'tensor_shape') else tensor_codec.from_numpy(value)
      request.inputs[name].CopyFrom(proto)
    return self.send(request)

  def send(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """Predict with a request built beforehand (e.g. by `recommend_request`), as it is."""
    return self._call(self._predict.Predict, request)

  def recommend_request(self, user_ids: Sequence[str], histories: Sequence[Sequence[str]],
                        reasons: bool = False) -> predict_pb2.PredictRequest:
    """The `recommend` PredictRequest for this client's model and version (the model answers
    its top TOP_K items per user; `parse_recommendations` keeps the first k), or with `reasons`
    the `recommend_with_reasons` one, whose answer also names each item's reason."""
    request = requests.recommend(user_ids, histories, with_reasons=reasons)
    self._fill_spec(request.model_spec)
    return request

  @staticmethod
  def parse_recommendations(response: predict_pb2.PredictResponse,
                            k: Optional[int] = None) -> List[Recommendations]:
    """Each row of a recommendation response, cut to its first `k` items (all when None)."""
    item_ids = tensor_codec.to_numpy(response.outputs[signatures.ITEM_IDS])[:, :k]
    scores = tensor_codec.to_numpy(response.outputs[signatures.SCORES])[:, :k]
    reasons = (tensor_codec.to_numpy(response.outputs[signatures.REASON_ITEM_IDS])[:, :k]
               if signatures.REASON_ITEM_IDS in response.outputs else [None] * len(item_ids))
    version = response.model_spec.version.value
    return [Recommendations([item.decode() for item in row], row_scores.tolist(), version,
                            None if row_reasons is None
                            else [reason.decode() for reason in row_reasons])
            for row, row_scores, row_reasons in zip(item_ids, scores, reasons)]

  def recommend_batch(self, user_ids: Sequence[str], histories: Sequence[Sequence[str]],
                      k: int = 10, reasons: bool = False) -> List[Recommendations]:
    """Top-k items per user (history oldest first), k in [1, TOP_K]: the model returns its
    TOP_K and the client keeps the first k. With `reasons`, through `recommend_with_reasons`:
    each result's `reason_item_ids` names the history item that led to each item."""
    k = requests.check_k(k)
    request = self.recommend_request(user_ids, histories, reasons)
    try:
      response = self.send(request)
    except ServingClientError as error:
      # What TF Serving answers for a signature the SavedModel does not have.
      if reasons and error.code == grpc.StatusCode.FAILED_PRECONDITION and (
          signatures.RECOMMEND_WITH_REASONS in str(error)):
        raise ServingClientError(error.code, (
            f'{self._describe()} has no {signatures.RECOMMEND_WITH_REASONS} signature (exported '
            'before it): ask without reasons')) from None
      raise
    return self.parse_recommendations(response, k)

  def recommend(self, user_id: str, history: Sequence[str] = (), k: int = 10,
                reasons: bool = False) -> Recommendations:
    return self.recommend_batch([user_id], [history], k, reasons)[0]

  def score(self, user_id: str, item_ids: Sequence[str], history: Sequence[str] = (),
            history_ratings: Sequence[float] = ()) -> List[float]:
    """Predicted ratings of `item_ids` for the user (the `score` signature); `history_ratings`,
    when given, are the user's ratings of `history`, one per item."""
    request = requests.score(user_id, item_ids, history, history_ratings)
    self._fill_spec(request.model_spec)
    return tensor_codec.to_numpy(self.send(request).outputs[signatures.RATING]).tolist()

  def metadata(self, fields: Optional[Sequence[str]] = None
               ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata of `fields` (default: the signature defs, all the servers serve)."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=[signatures.SIGNATURE_DEF_FIELD] if fields is None else list(fields))
    self._fill_spec(request.model_spec)
    return self._call(self._predict.GetModelMetadata, request)

  def signatures(self) -> Dict[str, object]:
    """{signature name: SignatureDef} of the served version."""
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    self.metadata().metadata[signatures.SIGNATURE_DEF_FIELD].Unpack(signature_defs)
    return dict(signature_defs.signature_def)

  def status(self) -> get_model_status_pb2.GetModelStatusResponse:
    request = get_model_status_pb2.GetModelStatusRequest()
    self._fill_spec(request.model_spec)
    if self.version_label:  # GetModelStatus takes a version number only
      request.model_spec.ClearField('version_label')
    return self._call(self._models.GetModelStatus, request)

  def wait_until_available(self, timeout_s: float = 60.0) -> int:
    """Polls the status until a version is AVAILABLE; returns the highest such version."""
    deadline = time.time() + timeout_s
    while True:
      try:
        available = [status.version for status in self.status().model_version_status
                     if status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE]
        if available:
          return max(available)
      except ServingClientError as error:
        if error.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
          raise
      if time.time() > deadline:
        raise TimeoutError(f'{self._describe()} not available after {timeout_s:g} s')
      time.sleep(0.1)


def catalogue_file(model_dir: str, version: Optional[int] = None) -> str:
  """The catalogue file of a model's `version` under its base directory `model_dir` (TF
  Serving's layout), or of the newest version when `version` is None or not there;
  FileNotFoundError when there is none (models exported before the file was written)."""
  version_dirs = versions.version_dirs(model_dir)
  directory = version_dirs.get(version) or versions.latest_version_dir(model_dir)
  if directory is None:
    raise FileNotFoundError(f'no version directory under {model_dir}')
  path = catalogue_lib.catalogue_path(directory)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{directory} has no {catalogue_lib.CATALOGUE_FILE} (exported '
                            'without one): give --items instead')
  return path


def load_items(model_dir: Optional[str] = None, items_csv: Optional[str] = None,
               version: Optional[int] = None) -> Dict[str, catalogue_lib.Record]:
  """Item records by id for showing answers by title: the catalogue file of the served model
  (`model_dir`, see `catalogue_file`) or an `items.csv`; {} when given neither."""
  if model_dir:
    return catalogue_lib.read_catalogue(catalogue_file(model_dir, version))
  if items_csv:
    return catalogue_lib.read_items_csv(items_csv)
  return {}


def reason_text(reason_item_id: str, items: Mapping[str, catalogue_lib.Record]) -> str:
  """'because you watched Title (year)' (the id where the title is not known); '' for none."""
  if not reason_item_id:
    return ''
  return ('because you watched '
          f'{catalogue_lib.title(items.get(reason_item_id)) or reason_item_id}')


def describe(result: Recommendations,
             items: Mapping[str, catalogue_lib.Record]) -> List[Dict[str, object]]:
  """Each recommended item, best first, as {rank, item_id, score, title, year, genres} (title
  and year None, genres [] for an item `items` does not know), and when the answer carries
  reasons, reason_item_id (the history item that led to it, None where none did) and
  reason_title (its 'Title (year)', None where not known)."""
  unknown = catalogue_lib.record('')
  rows = [{'rank': rank, 'item_id': item, 'score': score,
           **{key: value for key, value in items.get(item, unknown).items()
              if key != catalogue_lib.ITEM_ID}}
          for rank, (item, score) in enumerate(zip(result.item_ids, result.scores), 1)]
  for row, reason in zip(rows, result.reason_item_ids or ()):
    row['reason_item_id'] = reason or None
    row['reason_title'] = (catalogue_lib.title(items.get(reason)) or None) if reason else None
  return rows


def _print_recommendations(model: str, user: str, result: Recommendations,
                           items: Mapping[str, catalogue_lib.Record], as_json: bool) -> None:
  """A recommend answer as one JSON object, or a header line and one line per item: rank, id,
  score and, where known, title, year and genres, and the history item that led to it."""
  if as_json:
    print(json.dumps({'model': model, 'version': result.version, 'user_id': user,
                      'items': describe(result, items)}, ensure_ascii=False))
    return
  print(f'{model} version {result.version}: top {len(result.item_ids)} for user {user}')
  reasons = result.reason_item_ids or [''] * len(result.item_ids)
  for rank, (item, value, reason) in enumerate(zip(result.item_ids, result.scores, reasons), 1):
    parts = (catalogue_lib.label(items.get(item)), reason_text(reason, items))
    print(f'{rank:4d}  {item:>10}  {value:.4f}  {"  ".join(part for part in parts if part)}'
          .rstrip())


def _print_signatures(client: ServingClient) -> None:
  response_signatures = client.signatures()
  for name in sorted(response_signatures):
    signature = response_signatures[name]
    print(name)
    for kind, tensors in (('in ', signature.inputs), ('out', signature.outputs)):
      for key in sorted(tensors):
        info = tensors[key]
        shape = ('?' if info.tensor_shape.unknown_rank else
                 '[' + ', '.join(str(d.size) if d.size >= 0 else 'None'
                                 for d in info.tensor_shape.dim) + ']')
        print(f'  {kind} {key}: {tensor_codec.dtype_name(info.dtype)} {shape}')


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--target', default='127.0.0.1:8500', help='host:port of the server')
  parser.add_argument('--model', default='student', help='model name')
  pin = parser.add_mutually_exclusive_group()
  pin.add_argument('--version', type=int, help='version number (default: latest)')
  pin.add_argument('--label', help='version label, e.g. stable or canary')
  parser.add_argument('--deadline', type=float, default=5.0, help='seconds per call')
  parser.add_argument('--retries', type=int, default=3, help='retries on UNAVAILABLE')
  commands = parser.add_subparsers(dest='command', required=True)
  recommend = commands.add_parser(
      'recommend', help='top-k items for a user',
      description='Top-k items for a user. A user id unknown to the model (a new user) works: '
                  'it falls into the OOV bucket and --history carries the query.')
  recommend.add_argument('user', help='user id; an unknown one is served from --history')
  recommend.add_argument('--history', nargs='*', default=[],
                         help='item ids, oldest first (never recommended back)')
  recommend.add_argument('-k', type=int, default=10,
                         help=f'items to show, 1 to {signatures.TOP_K}')
  titles = recommend.add_mutually_exclusive_group()
  titles.add_argument('--model-dir',
                      help="the served model's base directory (e.g. outputs/serving/student): "
                           'titles from the catalogue file of the version that answers')
  titles.add_argument('--items', help='titles from an items.csv (item_id, title, genres, year)')
  recommend.add_argument('--reasons', action='store_true',
                         help='say which history item led to each item ("because you watched '
                              f'..."), through the {signatures.RECOMMEND_WITH_REASONS} signature')
  recommend.add_argument('--json', action='store_true',
                         help='print one JSON object: model, version, user_id and items '
                              '(rank, item_id, score, title, year, genres; with --reasons '
                              'reason_item_id, reason_title)')
  score = commands.add_parser('score', help='predicted ratings of items for a user')
  score.add_argument('user')
  score.add_argument('items', nargs='+')
  score.add_argument('--history', nargs='*', default=[], help='item ids, oldest first')
  score.add_argument('--history-ratings', nargs='*', type=float, default=[],
                     help="the user's ratings of the --history items, in the same order")
  commands.add_parser('metadata', help='signatures of the served version')
  commands.add_parser('status', help='state of every version')
  args = parser.parse_args(argv)

  client = ServingClient(args.target, args.model, args.version, args.label, args.deadline,
                         args.retries)
  try:
    if args.command == 'recommend':
      items = load_items(items_csv=args.items)  # before the call: a bad file fails fast
      result = client.recommend(args.user, args.history, args.k, reasons=args.reasons)
      if args.model_dir:
        items = load_items(model_dir=args.model_dir, version=result.version)
      _print_recommendations(args.model, args.user, result, items, args.json)
    elif args.command == 'score':
      for item, rating in zip(args.items, client.score(args.user, args.items, args.history,
                                                           args.history_ratings)):
        print(f'{item:>10}  {rating:.3f}')
    elif args.command == 'metadata':
      _print_signatures(client)
    else:
      for status in client.status().model_version_status:
        error = f'  {status.status.error_message}' if status.status.error_message else ''
        print(f'{args.model} version {status.version}: {STATE_NAMES(status.state)}{error}')
  except (ServingClientError, ValueError, OSError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  finally:
    client.close()
  return 0


if __name__ == '__main__':
  sys.exit(main())
