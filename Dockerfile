# The image every pipeline step runs in (PIPELINE_IMAGE): TFX 1.15.1 with this project installed
# at /pipeline, so that components import their code by dotted path (`models.run_fn.run_fn`,
# `models.preprocessing.preprocessing_fn`). The base image's entrypoint is Beam's worker boot,
# so the same image also serves as Dataflow's --sdk_container_image.
#
# `tfx pipeline create|update --build-image`, run from the repository root, builds this file with
# the local Docker daemon, pushes the image to PIPELINE_IMAGE and compiles the pipeline with the
# pushed digest. (TFX 1.15 writes no build.yaml and needs no skaffold; it generates a Dockerfile
# only when none exists.) By hand: docker build -t "$PIPELINE_IMAGE" . && docker push ...
FROM tensorflow/tfx:1.15.1

WORKDIR /pipeline
COPY . .
RUN python -m pip install --no-cache-dir -c requirements/lock.txt -e .
