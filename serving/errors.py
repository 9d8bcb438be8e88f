"""The error a serving request fails with: a gRPC status code and TF Serving's message."""
import grpc

MAX_MESSAGE_LENGTH = 2000  # characters of a message sent back; op errors may quote whole inputs


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
  """The ServingError for a `tf.errors.OpError` raised while running a signature: TF's code,
  except that UNKNOWN (an op that failed for no stated reason) is answered INTERNAL, since gRPC
  answers UNKNOWN to a handler's uncaught exception and a client could not tell them apart."""
  code = _CODES_BY_VALUE.get(error.error_code, grpc.StatusCode.INTERNAL)
  if code in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN):
    code = grpc.StatusCode.INTERNAL
  return ServingError(code, error.message)


def from_undecodable_op_message(error: UnicodeDecodeError) -> ServingError:
  """The ServingError for an op error whose message TensorFlow's Python binding cannot decode.

  The binding turns a failed run's status message into a str as UTF-8 and raises this
  UnicodeDecodeError instead of the op's error when the message quotes bytes that are not UTF-8
  (ParseExample quotes an example it cannot parse, StringToNumber the string): the op's code is
  lost. Such bytes come from the request (a model's own names and vocabularies are text), so it
  is the request's data an op refused: INVALID_ARGUMENT, TF Serving's code for those ops. The
  message is the bytes the binding read, up to the first NUL, with `\\xNN` for the undecodable.
  """
  return invalid_argument(bytes(error.object).decode('utf-8', 'backslashreplace'))


def shortened(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
  """`message` cut to `limit` characters, saying how many were left out."""
  if len(message) <= limit:
    return message
  return f'{message[:limit]}... ({len(message) - limit} more characters)'
