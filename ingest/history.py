"""The history features of the prepared examples (the split itself is `contract.split_rules`).

An interaction's history is the user's items strictly before
it in the same order, so no example sees its own or later items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from contract import features
from contract import split_rules

def add_history(frame: pd.DataFrame, length: int) -> pd.DataFrame:
  """Returns a copy of `frame` with HISTORY and HISTORY_RATINGS columns: the user's latest
  `length` item ids strictly before each interaction, oldest first, and their ratings, each
  joined by `features.HISTORY_SEPARATOR` ('' when there are none).

  The window bounds are computed with numpy over the chronologically sorted rows; only the
  final string join runs per row, as numpy has no variable-length string slicing.
  """
  if length < 0:
    raise ValueError(f'history length must be >= 0, got {length}')
  order, rank, _ = split_rules.user_ranks(frame)
  stops = np.arange(len(frame))
  starts = stops - np.minimum(rank, length)
  result = frame.copy()
  for name, values in ((features.HISTORY, frame[features.ITEM_ID].tolist()),
                       (features.HISTORY_RATINGS,
                        [features.rating_text(rating) for rating in frame[features.RATING]])):
    values = [values[position] for position in order.tolist()]
    joined = np.empty(len(frame), dtype=object)
    joined[order] = [features.HISTORY_SEPARATOR.join(values[start:stop])
                     for start, stop in zip(starts.tolist(), stops.tolist())]
    result[name] = joined
  return result
