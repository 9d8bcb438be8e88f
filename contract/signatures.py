"""The serving contract: signature, input and output names, the history a request carries and
the range of k. `models.export` writes SavedModels that keep it; `serving/`, the client and the
evaluation read models through it.

Signatures:
  serving_default(examples: string[batch] serialized tf.Example with user_id, history and any
    user side features) → item_ids string[batch, k], scores float[batch, k];
  recommend(user_id: string[batch], history: string[batch, n] padded with '', k: int32 scalar in
    [1, TOP_K]) → item_ids, scores;
  recommend_with_features(user_id, history, k as above, age: int64[batch], gender, occupation,
    zip_code: string[batch]) → item_ids, scores;
  score(examples: string[batch] serialized tf.Example with user and item features) →
    rating float[batch].
SavedModels also carry `rank_catalogue` (a tf.function, not a signature): every catalogue item,
best first, without exclusions, for offline evaluation.
"""
from contract import features

SERVING_DEFAULT = 'serving_default'
RECOMMEND = 'recommend'
RECOMMEND_WITH_FEATURES = 'recommend_with_features'
SCORE = 'score'
SIGNATURES = (SERVING_DEFAULT, RECOMMEND, RECOMMEND_WITH_FEATURES, SCORE)
RANK_CATALOGUE = 'rank_catalogue'

# Inputs.
EXAMPLES = 'examples'
USER_ID = features.USER_ID
HISTORY = features.HISTORY
K = 'k'
SIDE_FEATURES = features.USER_SIDE_FEATURES  # recommend_with_features' extra inputs, in order

# Outputs.
ITEM_IDS = 'item_ids'
SCORES = 'scores'
RATING = 'rating'

# GetModelMetadata: the one metadata field served, a SignatureDefMap of the signatures above.
SIGNATURE_DEF_FIELD = 'signature_def'

HISTORY_LENGTH = 20  # latest history items a model reads, and excludes from its results
TOP_K = 100  # the largest k a request may ask for; k is in [1, TOP_K]
