"""The serving methods, one implementation for both front ends (gRPC in `serving.server`, REST
in `serving.rest`): Predict, GetModelMetadata and GetModelStatus on request protos, raising
`errors.ServingError`; and `failure`, the status code and message any exception is answered with.
"""
from typing import Dict, Tuple

from absl import logging
import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2

from contract import catalogue as catalogue_lib
from contract import signatures
from serving import errors
from serving import model_manager
from serving import servable as servable_lib


class ServingService:
  """The methods TF Serving's PredictionService and ModelService serve, on one ModelManager."""

  def __init__(self, manager: model_manager.ModelManager):
    self._manager = manager

  def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    servable = self._manager.acquire(request.model_spec)
    try:
      return servable.predict(request)
    finally:
      servable.release()

  def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if not request.metadata_field:
      raise errors.invalid_argument(
          'GetModelMetadataRequest must specify at least one metadata_field')
    unsupported = [field for field in request.metadata_field
                   if field != signatures.SIGNATURE_DEF_FIELD]
    if unsupported:
      raise errors.invalid_argument(f'Metadata field {unsupported[0]} is not supported')
    servable = self._manager.acquire(request.model_spec)
    try:
      response = get_model_metadata_pb2.GetModelMetadataResponse()
      response.model_spec.name = servable.name
      response.model_spec.version.value = servable.version
      signature_defs = get_model_metadata_pb2.SignatureDefMap()
      for key, signature in servable.signature_defs.items():
        signature_defs.signature_def[key].CopyFrom(signature)
      response.metadata[signatures.SIGNATURE_DEF_FIELD].Pack(signature_defs)
      return response
    finally:
      servable.release()

  def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest
                       ) -> get_model_status_pb2.GetModelStatusResponse:
    return self._manager.status(request.model_spec)

  def catalogue(self, spec: model_pb2.ModelSpec) -> str:
    """The catalogue file (`contract.catalogue`) of the version `spec` names, as it is: what the
    local server's page shows titles from (REST only; TF Serving has no such method).
    NOT_FOUND when that version was exported without one."""
    servable = self._manager.acquire(spec)
    try:
      with open(catalogue_lib.catalogue_path(servable.path), encoding='utf-8') as f:
        return f.read()
    except FileNotFoundError:
      raise errors.not_found(f'{servable.name} version {servable.version} has no '
                             f'{catalogue_lib.CATALOGUE_FILE}') from None
    finally:
      servable.release()

  def signature_inputs(self, spec: model_pb2.ModelSpec
                       ) -> Dict[str, meta_graph_pb2.TensorInfo]:
    """The inputs of the signature `spec` names (default: serving_default) in the version it
    names, as TF Serving's REST API reads them to convert JSON into tensors."""
    servable = self._manager.acquire(spec)
    try:
      name = spec.signature_name or servable_lib.DEFAULT_SIGNATURE
      signature = servable.signature_defs.get(name)
      if signature is None:
        raise errors.invalid_argument(
            f'Serving signature name: "{name}" not found in signature def')
      return dict(signature.inputs)
    finally:
      servable.release()


def failure(error: Exception, method: str) -> Tuple[grpc.StatusCode, str]:
  """The status code and message (cut to errors.MAX_MESSAGE_LENGTH) a failed `method` answers.

  A ServingError is answered with its code and a TF op error escaping from anywhere with TF's
  code. Anything else is a bug of the server: logged and answered INTERNAL.
  """
  if isinstance(error, errors.ServingError):
    code, message = error.code, error.message
  elif isinstance(error, tf.errors.OpError):
    code, message = errors.from_tensorflow(error).code, error.message
  else:
    logging.error('%s failed on a request', method, exc_info=error)
    code, message = grpc.StatusCode.INTERNAL, f'{type(error).__name__}: {error}'
  if code == grpc.StatusCode.INTERNAL:
    logging.error('%s answers INTERNAL: %s', method, message)
  return code, errors.shortened(message)
