"""The curated schema and DataGate: which anomalies ExampleValidator's check (TFDV) reports for
data that breaks the schema, and the gate that stops on them and names them."""
import os

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.example_validator import executor as example_validator_executor
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import io_utils
from tfx.utils import writer_utils

from components import data_gate
from components import schema_import
from contract import features
from pipeline import configs
from pipeline import infer_schema
import prepare_reference


@pytest.fixture(scope='module')
def schema():
  """The schema the pipeline validates explicit feedback against."""
  return schema_import.curated_schema(configs.SCHEMA_FILE, configs.RAW_DATA.rating_range,
                                      features.EXPLICIT)


@pytest.fixture(scope='module')
def rows(synthetic_dataset):
  frame = prepare_reference.examples_frame(synthetic_dataset, configs.HISTORY_LENGTH)
  records = frame[list(features.RAW_FEATURES)].to_dict('records')
  return [{name: (float(value) if name in features.FLOAT_FEATURES else
                  int(value) if name in features.INT_FEATURES else str(value))
           for name, value in record.items()} for record in records]


def _feature(value) -> tf.train.Feature:
  if isinstance(value, str):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
  if isinstance(value, float):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def statistics(rows, directory):
  """TFDV statistics of the examples holding `rows` (feature name -> value; None: absent),
  each value in the list its Python type gives (str: bytes, float, int)."""
  path = os.path.join(directory, 'examples.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    for row in rows:
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          name: _feature(value) for name, value in row.items() if value is not None
      })).SerializeToString())
  return tfdv.generate_statistics_from_tfrecord(path)


def anomalous_features(stats, schema):
  return {name: {anomalies_pb2.AnomalyInfo.Type.Name(reason.type) for reason in info.reason}
          for name, info in tfdv.validate_statistics(stats, schema).anomaly_info.items()}


def test_schema_describes_every_raw_feature_with_the_configured_bounds(schema):
  by_name = {feature.name: feature for feature in schema.feature}
  assert set(by_name) == set(features.RAW_FEATURES + features.OPTIONAL_STRING_FEATURES)
  for name in features.RAW_FEATURES:
    feature = by_name[name]
    assert feature.presence.min_fraction == 1.0 and feature.presence.min_count == 1
    assert [dim.size for dim in feature.shape.dim] == [1]
  for name in features.OPTIONAL_STRING_FEATURES:  # in the examples of items that have it
    feature = by_name[name]
    assert feature.presence.min_fraction == 0.0 and feature.presence.min_count == 0
    assert not feature.HasField('shape') and feature.type == schema_pb2.BYTES
    assert (feature.value_count.min, feature.value_count.max) == (1, 1)
  rating = by_name[features.RATING].float_domain
  assert (rating.min, rating.max) == configs.RAW_DATA.rating_range
  assert by_name[features.TIMESTAMP].int_domain.min == 0
  assert (by_name[features.AGE].int_domain.min, by_name[features.AGE].int_domain.max) == (0, 120)
  for name in (features.USER_ID, features.ITEM_ID, features.TIMESTAMP):
    assert by_name[name].type == (schema_pb2.INT if name == features.TIMESTAMP
                                  else schema_pb2.BYTES)


def test_well_formed_data_has_no_anomalies(rows, schema, tmp_path):
  assert anomalous_features(statistics(rows, str(tmp_path)), schema) == {}


def test_item_text_on_some_examples_only_has_no_anomalies(rows, schema, tmp_path):
  with_text = [{**row, features.ITEM_TEXT: f'a film about {row[features.ITEM_ID]}'}
               if index % 3 == 0 else row for index, row in enumerate(rows)]
  assert anomalous_features(statistics(with_text, str(tmp_path)), schema) == {}


def test_ratings_on_another_scale_are_out_of_range(rows, schema, tmp_path):
  rescaled = [{**row, features.RATING: row[features.RATING] * 20} for row in rows]
  assert anomalous_features(statistics(rescaled, str(tmp_path)), schema) == {
      features.RATING: {'FLOAT_TYPE_BIG_FLOAT'}}


def test_missing_user_ids_break_the_presence_requirement(rows, schema, tmp_path):
  missing = [{**row, features.USER_ID: None} if index % 5 < 2 else row
             for index, row in enumerate(rows)]  # 40% of the examples
  assert features.USER_ID in anomalous_features(statistics(missing, str(tmp_path)), schema)


def test_a_side_feature_that_switches_type_is_reported(rows, schema, tmp_path):
  as_text = [{**row, features.AGE: f'{row[features.AGE]} years'} for row in rows]
  assert set(anomalous_features(statistics(as_text, str(tmp_path)), schema)) == {features.AGE}


def _anomalies_artifact(directory, by_split):
  artifact = standard_artifacts.ExampleAnomalies()
  artifact.uri = str(directory)
  artifact.split_names = artifact_utils.encode_split_names(list(by_split))
  for split, anomalies in by_split.items():
    split_dir = artifact_utils.get_split_uri([artifact], split)
    os.makedirs(split_dir)
    writer_utils.write_anomalies(
        os.path.join(split_dir, example_validator_executor.DEFAULT_FILE_NAME), anomalies)
  return artifact


def _statistics_artifact(directory, rows_by_split):
  artifact = standard_artifacts.ExampleStatistics()
  artifact.uri = str(directory)
  artifact.split_names = artifact_utils.encode_split_names(list(rows_by_split))
  for split, split_rows in rows_by_split.items():
    split_dir = artifact_utils.get_split_uri([artifact], split)
    os.makedirs(split_dir)
    io_utils.write_bytes_file(os.path.join(split_dir, data_gate.STATISTICS_FILE),
                              statistics(split_rows, split_dir).SerializeToString())
  return artifact


def _run_gate(anomalies, statistics_artifact, tmp_path):
  schema_artifact = standard_artifacts.Schema()
  schema_artifact.uri = str(tmp_path / 'schema')
  os.makedirs(schema_artifact.uri)
  tf.io.gfile.copy(configs.SCHEMA_FILE, os.path.join(schema_artifact.uri, data_gate.SCHEMA_FILE))
  validated = standard_artifacts.Schema()
  validated.uri = str(tmp_path / 'validated')
  data_gate.DataGate.EXECUTOR_SPEC.executor_class().Do(
      {'anomalies': [anomalies], 'statistics': [statistics_artifact],
       'schema': [schema_artifact]},
      {'validated_schema': [validated]},
      {'rating_drift_threshold': configs.RAW_DATA.rating_drift_threshold})
  return validated


@pytest.fixture(scope='module')
def split_statistics(rows, tmp_path_factory):
  """Statistics of the three splits, all of the same (well-formed) rows."""
  return _statistics_artifact(tmp_path_factory.mktemp('statistics'),
                              {split: rows for split in features.SPLITS})


def _clean_anomalies(directory):
  return _anomalies_artifact(directory,
                             {split: anomalies_pb2.Anomalies() for split in features.SPLITS})


def test_the_gate_passes_clean_data_and_hands_on_the_schema(tmp_path, split_statistics):
  validated = _run_gate(_clean_anomalies(tmp_path / 'anomalies'), split_statistics, tmp_path)
  with open(os.path.join(validated.uri, data_gate.SCHEMA_FILE)) as f, open(
      configs.SCHEMA_FILE) as curated:
    assert f.read() == curated.read()


def test_the_gate_stops_on_anomalies_and_names_them(tmp_path, split_statistics):
  bad = anomalies_pb2.Anomalies()
  bad.anomaly_info[features.RATING].short_description = 'Out-of-range values'
  bad.anomaly_info[features.RATING].description = 'Unexpectedly high value: 100>5'
  bad.anomaly_info[features.RATING].reason.add(type=anomalies_pb2.AnomalyInfo.FLOAT_TYPE_BIG_FLOAT)
  anomalies = _anomalies_artifact(tmp_path / 'anomalies', {
      features.TRAIN_SPLIT: bad, features.EVAL_SPLIT: anomalies_pb2.Anomalies(),
      features.TEST_SPLIT: anomalies_pb2.Anomalies()})
  assert data_gate.read_anomalies(anomalies) == [
      "split 'train', feature 'rating': Out-of-range values (FLOAT_TYPE_BIG_FLOAT): "
      'Unexpectedly high value: 100>5']
  with pytest.raises(data_gate.DataAnomaliesError, match="feature 'rating': Out-of-range"):
    _run_gate(anomalies, split_statistics, tmp_path)
  assert not os.path.exists(tmp_path / 'validated' / data_gate.SCHEMA_FILE)


def test_the_gate_stops_when_the_test_ratings_drift_from_train(tmp_path, rows):
  # Explicit ratings in train, then only the top rating: in range, but another distribution.
  drifted = [{**row, features.RATING: 5.0} for row in rows]
  statistics_artifact = _statistics_artifact(tmp_path / 'statistics', {
      features.TRAIN_SPLIT: rows, features.EVAL_SPLIT: rows, features.TEST_SPLIT: drifted})
  with pytest.raises(data_gate.DataAnomaliesError,
                     match="split 'test' against 'train', feature 'rating': .*Jensen-Shannon"):
    _run_gate(_clean_anomalies(tmp_path / 'anomalies'), statistics_artifact, tmp_path)


def test_make_schema_infers_from_the_latest_statistics(rows, tmp_path):
  stats = statistics(rows, str(tmp_path))
  split_dir = tmp_path / 'out' / 'pipeline_root' / 'StatisticsGen' / 'statistics' / '7' / (
      f'Split-{features.TRAIN_SPLIT}')
  os.makedirs(split_dir)
  io_utils.write_bytes_file(str(split_dir / infer_schema.STATISTICS_FILE),
                            stats.SerializeToString())
  latest = infer_schema.latest_statistics(str(tmp_path / 'out'))
  written = infer_schema.infer_schema(latest, str(tmp_path / 'inferred.pbtxt'))
  inferred = tfdv.load_schema_text(written)
  assert {feature.name for feature in inferred.feature} == set(features.RAW_FEATURES)
  with pytest.raises(FileNotFoundError, match='run the pipeline first'):
    infer_schema.latest_statistics(str(tmp_path / 'nothing'))


@pytest.mark.parametrize('feedback', [features.EXPLICIT, features.IMPLICIT])
def test_one_rating_value_stops_an_explicit_run_and_passes_an_implicit_one(
    tmp_path, rows, feedback):
  """A log without ratings (every rating 1.0) must be run as implicit feedback; an implicit run
  checks no rating drift (its ratings carry nothing), here test ratings of another value."""
  implicit = [{**row, features.RATING: 1.0} for row in rows]
  statistics_artifact = _statistics_artifact(tmp_path / 'statistics', {
      features.TRAIN_SPLIT: implicit, features.EVAL_SPLIT: implicit,
      features.TEST_SPLIT: [{**row, features.RATING: 5.0} for row in rows]})
  validated = standard_artifacts.Schema()
  validated.uri = str(tmp_path / 'validated')
  schema_artifact = standard_artifacts.Schema()
  schema_artifact.uri = str(tmp_path / 'schema')
  os.makedirs(schema_artifact.uri)
  tf.io.gfile.copy(configs.SCHEMA_FILE, os.path.join(schema_artifact.uri, data_gate.SCHEMA_FILE))

  def run():
    data_gate.DataGate.EXECUTOR_SPEC.executor_class().Do(
        {'anomalies': [_clean_anomalies(tmp_path / 'anomalies')],
         'statistics': [statistics_artifact], 'schema': [schema_artifact]},
        {'validated_schema': [validated]},
        {'rating_drift_threshold': configs.RAW_DATA.rating_drift_threshold, 'feedback': feedback})

  if feedback == features.EXPLICIT:
    with pytest.raises(data_gate.DataAnomaliesError,
                       match="split 'train', feature 'rating': every rating is 1: .*"
                             'FEEDBACK=implicit'):
      run()
    assert not os.path.exists(os.path.join(validated.uri, data_gate.SCHEMA_FILE))
  else:
    run()
    assert os.path.exists(os.path.join(validated.uri, data_gate.SCHEMA_FILE))


@pytest.mark.parametrize('scale, rating_range', [
    ('thumbs down/up', (0.0, 1.0)), ('0-1', (0.0, 1.0)), ('1-10', (1.0, 10.0))])
def test_ratings_on_another_scale_pass_with_the_rating_range_set_to_it(
    rows, tmp_path, scale, rating_range):
  low, high = rating_range
  if scale == 'thumbs down/up':
    rescaled = [{**row, features.RATING: float(row[features.RATING] >= 4)} for row in rows]
  else:  # stars 1..5 mapped linearly onto the scale
    rescaled = [{**row, features.RATING: low + (row[features.RATING] - 1) / 4 * (high - low)}
                for row in rows]
  stats = statistics(rescaled, str(tmp_path))
  on_scale = schema_import.curated_schema(configs.SCHEMA_FILE, rating_range, features.EXPLICIT)
  assert anomalous_features(stats, on_scale) == {}
  assert features.RATING in anomalous_features(stats, schema_import.curated_schema(
      configs.SCHEMA_FILE, (2.0, 3.0), features.EXPLICIT))


def test_implicit_feedback_has_no_rating_domain_and_a_bad_range_is_refused(rows, tmp_path):
  implicit = schema_import.curated_schema(configs.SCHEMA_FILE, configs.RAW_DATA.rating_range,
                                          features.IMPLICIT)
  assert not tfdv.get_feature(implicit, features.RATING).HasField('float_domain')
  constant = [{**row, features.RATING: 0.0} for row in rows]  # outside RAW_DATA.rating_range
  assert anomalous_features(statistics(constant, str(tmp_path)), implicit) == {}
  for bad in ((5.0, 0.5), (1.0,), (0.0, float('inf'))):
    with pytest.raises(ValueError, match='rating_range must be'):
      schema_import.ImportSchemaGen(configs.SCHEMA_FILE, bad)
  with pytest.raises(ValueError, match="feedback 'ratings'"):
    schema_import.ImportSchemaGen(configs.SCHEMA_FILE, configs.RAW_DATA.rating_range, 'ratings')


def test_import_schema_gen_writes_the_schema_with_the_range(tmp_path):
  component = schema_import.ImportSchemaGen(configs.SCHEMA_FILE, (1, 10))
  output = standard_artifacts.Schema()
  output.uri = str(tmp_path)
  schema_import.Executor().Do({}, {'schema': [output]}, component.exec_properties)
  written = tfdv.load_schema_text(str(tmp_path / schema_import.OUTPUT_FILE))
  domain = tfdv.get_feature(written, features.RATING).float_domain
  assert (domain.min, domain.max) == (1.0, 10.0)
  assert written == schema_import.curated_schema(configs.SCHEMA_FILE, (1, 10), features.EXPLICIT)
