"""Compiles the pipeline for Kubeflow Pipelines (v1) with KubeflowDagRunner.

    tfx pipeline create --engine kubeflow --pipeline_path kubeflow/runner.py \
        --endpoint $ENDPOINT --build-image
    tfx run create --engine kubeflow --pipeline_name recsys-distill --endpoint $ENDPOINT

Run directly (`python -m kubeflow.runner`) or through `tfx pipeline compile`, it writes
`recsys-distill.tar.gz` (an Argo workflow) into the current directory. Paths, the image and the
Beam arguments come from `kubeflow.settings`; ML Metadata is the cluster's own MLMD service.
"""
from absl import logging
from kfp import onprem
from tfx import v1 as tfx
from tfx.orchestration.kubeflow import kubeflow_dag_runner

from kubeflow import settings


def run() -> None:
  """Builds the pipeline from the settings and compiles it for Kubeflow Pipelines."""
  # The defaults mount the cluster's MLMD configuration into every step.
  operator_funcs = kubeflow_dag_runner.get_default_pipeline_operator_funcs()
  operator_funcs.append(settings.resource_operator_func())  # TRAINER_*, BEAM_STEP_*
  if settings.PVC_NAME:
    operator_funcs.append(onprem.mount_pvc(
        settings.PVC_NAME, volume_name='pipeline-volume',
        volume_mount_path=settings.PVC_MOUNT_PATH))
  runner_config = tfx.orchestration.experimental.KubeflowDagRunnerConfig(
      pipeline_operator_funcs=operator_funcs,
      kubeflow_metadata_config=kubeflow_dag_runner.get_default_kubeflow_metadata_config(),
      tfx_image=settings.PIPELINE_IMAGE)
  tfx.orchestration.experimental.KubeflowDagRunner(config=runner_config).run(
      settings.create_pipeline())


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  run()
