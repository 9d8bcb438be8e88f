"""Runs `preprocessing_fn` with TF Transform on in-memory rows, as the Transform component does."""
import os
from typing import Dict, List, Tuple

import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import metadata_io
from tensorflow_transform.tf_metadata import schema_utils

from contract import features
from models import hparams
from models import preprocessing


def raw_feature_spec(item_text: bool = False) -> Dict[str, tf.io.FixedLenFeature]:
  """The raw spec SchemaGen infers for prepared examples (one value per feature), with the
  optional `features.ITEM_TEXT` (sparse, as the curated schema gives it) when `item_text`."""
  def spec(name):
    if name in features.INT_FEATURES:
      return tf.io.FixedLenFeature([1], tf.int64)
    if name in features.FLOAT_FEATURES:
      return tf.io.FixedLenFeature([1], tf.float32)
    return tf.io.FixedLenFeature([1], tf.string)
  optional = {features.ITEM_TEXT: tf.io.VarLenFeature(tf.string)} if item_text else {}
  return {**{name: spec(name) for name in features.RAW_FEATURES}, **optional}


def rows_from_frame(frame) -> List[dict]:
  """Instance dicts (one value per feature) from a prepared interactions frame."""
  return [{name: [row[name]] for name in features.RAW_FEATURES}
          for row in frame.to_dict('records')]


def analyze_and_transform(rows: List[dict], config: hparams.TransformHParams,
                          output_dir: str) -> Tuple[List[dict], tft.TFTransformOutput]:
  """Transformed rows and the written transform output (with raw metadata, as TFX writes it);
  rows with `features.ITEM_TEXT` make it a (sparse) raw feature, [] in the rows without it."""
  item_text = any(features.ITEM_TEXT in row for row in rows)
  if item_text:
    rows = [{features.ITEM_TEXT: [], **row} for row in rows]
  metadata = dataset_metadata.DatasetMetadata(
      schema_utils.schema_from_feature_spec(raw_feature_spec(item_text)))
  with tft_beam.Context(temp_dir=os.path.join(output_dir, 'tmp'), force_tf_compat_v1=False):
    (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
        lambda inputs: preprocessing.preprocessing_fn(inputs, hparams.to_dict(config)))
    _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
  metadata_io.write_metadata(
      metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
  return transformed, tft.TFTransformOutput(output_dir)
