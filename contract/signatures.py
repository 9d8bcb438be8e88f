"""The serving contract: signature, input and output names, the history a request carries and
the number of items a model returns. `models.export` writes SavedModels that keep it;
`serving/`, the client and the evaluation read models through it.

Signatures:
  serving_default(examples: string[batch] serialized tf.Example with user_id, history and any
    user side features) → item_ids string[batch, TOP_K], scores float[batch, TOP_K];
  recommend(user_id: string[batch], history: string[batch, n] padded with '') → item_ids,
    scores as above;
  recommend_with_features(user_id, history as above, age: int64[batch], gender, occupation,
    zip_code: string[batch]) → item_ids, scores as above;
  recommend_with_reasons(user_id, history as in `recommend`) → item_ids, scores as `recommend`
    returns them, and reason_item_ids string[batch, TOP_K];
  score(examples: string[batch] serialized tf.Example with user and item features) →
    rating float[batch]: the predicted rating for explicit feedback; for implicit feedback
    (models trained without ratings) the retrieval score of the user and the item, query ·
    candidate, the unbounded affinity `recommend` ranks by (higher: more likely to interact).

`reason_item_ids` says why each item is there ("because you watched ..."): the id of the history
item (one of the latest HISTORY_LENGTH) whose own term in the item's score is the largest, '' where
no history item's term is positive (no history, or a model whose score has no per-history-item
terms). Those terms are exact sums of the score for the parts of a model that add one term per
history item (`models.reasons`: the item-to-item component; the student's linearly pooled
history); a teacher's attention over the history has no such terms and is not counted. Only
`recommend_with_reasons` computes them: the other recommendation signatures pay nothing for
them, and a client asks for reasons where it shows them.

Every input of every signature has a leading batch dimension (no scalar inputs), so TF Serving's
server-side batching can merge requests along dimension 0. Models return a fixed top-K (TOP_K,
best first; fewer only when the catalogue minus the history holds fewer items) and there is no
`k` input: a client wanting k ≤ TOP_K items keeps the first k of each row. Every batched request
therefore has the same output shape, which is what TF Serving's batching handles best.
SavedModels also carry `rank_catalogue` (a tf.function, not a signature): the best `depth`
catalogue items (every item when `depth` is at least the catalogue's size), best first, without
exclusions, for offline evaluation.
"""
from contract import features

SERVING_DEFAULT = 'serving_default'
RECOMMEND = 'recommend'
RECOMMEND_WITH_FEATURES = 'recommend_with_features'
RECOMMEND_WITH_REASONS = 'recommend_with_reasons'
SCORE = 'score'
SIGNATURES = (SERVING_DEFAULT, RECOMMEND, RECOMMEND_WITH_FEATURES, RECOMMEND_WITH_REASONS, SCORE)
RANK_CATALOGUE = 'rank_catalogue'

# Inputs.
EXAMPLES = 'examples'
USER_ID = features.USER_ID
HISTORY = features.HISTORY
DEPTH = 'depth'  # rank_catalogue's scalar input: how many items to return
SIDE_FEATURES = features.USER_SIDE_FEATURES  # recommend_with_features' extra inputs, in order

# Outputs.
ITEM_IDS = 'item_ids'
SCORES = 'scores'
REASON_ITEM_IDS = 'reason_item_ids'
RECOMMENDATION_OUTPUTS = (ITEM_IDS, SCORES)  # of serving_default, recommend(_with_features)
REASONS_OUTPUTS = RECOMMENDATION_OUTPUTS + (REASON_ITEM_IDS,)  # of recommend_with_reasons
RATING = 'rating'

# GetModelMetadata: the one metadata field served, a SignatureDefMap of the signatures above.
SIGNATURE_DEF_FIELD = 'signature_def'

HISTORY_LENGTH = 100  # latest history items a model reads, and excludes from its results
TOP_K = 100  # items every recommendation signature returns per query; clients keep k ≤ TOP_K
