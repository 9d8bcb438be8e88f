"""Compiles the pipeline into a KFP v2 pipeline spec (Vertex AI Pipelines, Kubeflow Pipelines 2).

    PIPELINE_ROOT=gs://... PIPELINE_IMAGE=... python -m kubeflow.runner_v2

writes `$PIPELINE_DEFINITION_FILE` (default `recsys-distill_pipeline.json`). Paths, the image and
the Beam arguments come from `kubeflow.settings`; the v2 backends keep ML Metadata themselves.
"""
import os

from absl import logging
from tfx import v1 as tfx

from kubeflow import settings

PIPELINE_DEFINITION_FILE = os.environ.get(
    'PIPELINE_DEFINITION_FILE', f'{settings.PIPELINE_NAME}_pipeline.json')


def run() -> None:
  """Builds the pipeline from the settings and writes its KFP v2 pipeline spec."""
  runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
      default_image=settings.PIPELINE_IMAGE)
  tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=runner_config, output_filename=PIPELINE_DEFINITION_FILE).run(
          settings.set_platform_configs(settings.create_pipeline(kfp_v2=True)))


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  run()
