"""Feature names of the project: defined once, used by the data path, Transform and the models.

Raw features are the columns of the prepared tf.Examples that ExampleGen ingests (one example per
interaction). Every id is a string so that serving requests carry ids exactly as users know them.
"""

# Interaction columns (the documented input schema: user_id, item_id, rating, timestamp).
USER_ID = 'user_id'
ITEM_ID = 'item_id'
RATING = 'rating'
TIMESTAMP = 'timestamp'

# The user's latest items strictly before this interaction, oldest first, space-separated, and
# the ratings the user gave them, in the same order (optional at serving time: '' = not known).
HISTORY = 'history'
HISTORY_RATINGS = 'history_ratings'

# Optional user side features.
AGE = 'age'
GENDER = 'gender'
OCCUPATION = 'occupation'
ZIP_CODE = 'zip_code'
USER_SIDE_FEATURES = (AGE, GENDER, OCCUPATION, ZIP_CODE)

# Optional item side features.
TITLE = 'title'
GENRES = 'genres'  # '|'-separated genre names
YEAR = 'year'
ITEM_SIDE_FEATURES = (TITLE, GENRES, YEAR)
# Optional item text: the text columns of items.csv that the configs declare
# (`TransformHParams.item_text_columns`, e.g. a description and tags), joined by spaces. Unlike
# the features above it is optional: an example carries it only when its item has such text
# (data without those columns gives examples without it), and only the content path that embeds
# cold items reads it (`models.content_path`), not the towers.
ITEM_TEXT = 'item_text'
OPTIONAL_STRING_FEATURES = (ITEM_TEXT,)

INT_FEATURES = (TIMESTAMP, AGE, YEAR)
FLOAT_FEATURES = (RATING,)
STRING_FEATURES = (USER_ID, ITEM_ID, HISTORY, HISTORY_RATINGS, GENDER, OCCUPATION, ZIP_CODE, TITLE, GENRES)
RAW_FEATURES = INT_FEATURES + FLOAT_FEATURES + STRING_FEATURES  # in every example

# Value written for a missing side feature.
UNKNOWN = 'unknown'
HISTORY_SEPARATOR = ' '
GENRE_SEPARATOR = '|'


# The kind of feedback the interactions are (`pipeline.configs.FEEDBACK`): explicit ratings, or
# implicit (a log of clicks, views or purchases: no rating column, or one constant value). An
# implicit run trains retrieval only; its `rating` column (1.0 when absent) carries nothing.
EXPLICIT = 'explicit'
IMPLICIT = 'implicit'
FEEDBACK_KINDS = (EXPLICIT, IMPLICIT)


def rating_text(rating: float) -> str:
  """A rating as written in HISTORY_RATINGS: '4', '3.5'."""
  return f'{rating:g}'

# Names of split directories written before ExampleGen.
TRAIN_SPLIT = 'train'
EVAL_SPLIT = 'eval'
TEST_SPLIT = 'test'
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, TEST_SPLIT)
# One example per item known at export time (in the item side table or in any split), with its
# side features and no interaction: what the catalogue is made of, cold items included.
ITEMS_SPLIT = 'items'
EXAMPLE_SPLITS = SPLITS + (ITEMS_SPLIT,)  # the splits RawExampleGen writes

# Transformed features (outputs of `models.preprocessing.preprocessing_fn`). Index features of
# item-like vocabularies reserve 0 for padding: vocabulary entry i has index i + 1.
USER_INDEX = 'user_index'
ITEM_INDEX = 'item_index'
HISTORY_INDICES = 'history_indices'
HISTORY_RATING_VALUES = 'history_rating_values'  # aligned with HISTORY_INDICES, 0 = unknown
GENDER_INDEX = 'gender_index'
OCCUPATION_INDEX = 'occupation_index'
ZIP_INDEX = 'zip_index'
AGE_Z = 'age_z'
YEAR_Z = 'year_z'
GENRE_INDICES = 'genre_indices'
TITLE_INDICES = 'title_indices'
ITEM_TEXT_INDICES = 'item_text_indices'  # of ITEM_TEXT's word tokens, when items have text
LABEL = RATING  # the rating passes through Transform unchanged
PADDING_INDEX = 0

# Vocabulary names written by Transform (read back with `vocabulary_by_name`).
USER_VOCAB = 'user_id'
ITEM_VOCAB = 'item_id'
GENDER_VOCAB = 'gender'
OCCUPATION_VOCAB = 'occupation'
ZIP_VOCAB = 'zip_prefix'
GENRE_VOCAB = 'genres'
TITLE_VOCAB = 'title_tokens'
ITEM_TEXT_VOCAB = 'item_text_tokens'


def default_value(name: str):
  """What a serving request may leave out: ids and history empty, side features unknown."""
  if name in INT_FEATURES:
    return 0
  if name in FLOAT_FEATURES:
    return 0.0
  if name in (USER_ID, ITEM_ID, HISTORY, HISTORY_RATINGS, ITEM_TEXT):
    return ''
  return UNKNOWN
