"""The error a serving request fails with: a gRPC status code and TF Serving's message."""
import grpc


class ServingError(Exception):
  """A request failure answered with `code` (TF Serving's code for the same failure)."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def invalid_argument(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


# TensorFlow's error codes are gRPC's (tensorflow/core/protobuf/error_codes.proto).
_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def from_tensorflow(error) -> ServingError:
  """The ServingError for a `tf.errors.OpError` raised while running a signature."""
  return ServingError(_CODES_BY_VALUE.get(error.error_code, grpc.StatusCode.UNKNOWN),
                      error.message)
