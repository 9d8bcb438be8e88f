"""The Evaluator's baseline: the latest blessed model that is older than the candidate.

TFX's `LatestBlessedModelStrategy` returns the latest blessed model even when it is the candidate
itself (a re-run whose Trainer hit the cache), which changes the Evaluator's inputs and makes it
and the Pusher run again on an unchanged model. Excluding the candidate and anything newer keeps
re-runs cached and compares a new model with the one blessed before it.

    baseline = tfx.dsl.Resolver(
        strategy_class=baseline_resolver.LatestBlessedModelBeforeCandidateStrategy,
        candidate=trainer.outputs['model'],
        model=tfx.dsl.Channel(type=Model),
        model_blessing=tfx.dsl.Channel(type=ModelBlessing, producer_component_id=...,
                                       output_key='blessing'))
"""
from typing import Dict, List, Optional

from tfx import types
from tfx.components.evaluator import constants as blessing_constants
from tfx.dsl.components.common import resolver

CANDIDATE_KEY = 'candidate'
MODEL_KEY = 'model'
MODEL_BLESSING_KEY = 'model_blessing'


def latest_blessed_before(candidates: List[types.Artifact], models: List[types.Artifact],
                          blessings: List[types.Artifact]) -> Dict[str, List[types.Artifact]]:
  """The newest model with a positive blessing and an id below every candidate's, with its
  blessing; empty lists when there is none (the first run: TFX then skips change thresholds)."""
  newest_allowed = min((candidate.id for candidate in candidates), default=None)
  blessed = {
      blessing.get_int_custom_property(blessing_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY):
          blessing
      for blessing in sorted(blessings, key=lambda b: b.id)
      if blessing.get_int_custom_property(blessing_constants.ARTIFACT_PROPERTY_BLESSED_KEY)
      == blessing_constants.BLESSED_VALUE}
  for model in sorted(models, key=lambda m: m.id, reverse=True):
    if (newest_allowed is None or model.id < newest_allowed) and model.id in blessed:
      return {MODEL_KEY: [model], MODEL_BLESSING_KEY: [blessed[model.id]],
              CANDIDATE_KEY: list(candidates)}
  return {MODEL_KEY: [], MODEL_BLESSING_KEY: [], CANDIDATE_KEY: list(candidates)}


class LatestBlessedModelBeforeCandidateStrategy(resolver.ResolverStrategy):
  """Resolves `model` and `model_blessing` to the latest blessed model older than `candidate`."""

  def resolve_artifacts(
      self, store, input_dict: Dict[str, List[types.Artifact]]
  ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store  # everything needed is in the resolved channels
    return latest_blessed_before(input_dict.get(CANDIDATE_KEY, []),
                                 input_dict.get(MODEL_KEY, []),
                                 input_dict.get(MODEL_BLESSING_KEY, []))
