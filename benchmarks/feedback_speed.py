"""The Trainer's phases for explicit and implicit feedback, side by side in one run:

    python -m benchmarks.feedback_speed --output OUTPUT [--rounds 2] [--epochs 2]

On the Transform outputs of a pipeline run in `OUTPUT` (`make run OUTPUT=...`), with the
pipeline's settings (`pipeline.configs`) and the Trainer's own training API: fits the
item-to-item component once, then for each round trains the teacher, distils the student and
fine-tunes it with quantization-aware training, once as the Trainer does for explicit feedback
and once for implicit feedback (`models.run_fn.retrieval_only`: no rating head, no rating
distillation), the two taking turns so that both see the same machine. The phases' compute does
not depend on the labels' values, so one data set serves both. Prints each phase's seconds by
round and feedback, and their ratio.
"""
import argparse
import dataclasses
import sys
import tempfile
import time
from typing import Dict, List

from contract import features
from benchmarks import transformed_data
from models import hparams
from models import run_fn
from models import training
from pipeline import configs

PHASES = ('teacher', 'distillation', 'quantization_aware_training')


def trainer_params(feedback: str, epochs: int) -> hparams.TrainerHParams:
  """The pipeline's Trainer settings for `feedback`, every phase `epochs` long."""
  return run_fn.retrieval_only(hparams.TrainerHParams(
      transform=configs.TRANSFORM, teacher=configs.TEACHER, student=configs.STUDENT,
      training=dataclasses.replace(configs.TRAINING, epochs=epochs),
      distillation=dataclasses.replace(configs.DISTILLATION, epochs=epochs),
      export=configs.EXPORT, item_item=configs.ITEM_ITEM,
      content_path=configs.CONTENT_PATH, feedback=feedback))


def one_round(data: training.TrainingData, params: hparams.TrainerHParams,
              tables) -> Dict[str, float]:
  """Seconds of each of `PHASES`, trained as `models.run_fn` trains them."""
  seconds = {}
  with tempfile.TemporaryDirectory() as tensorboard_dir:
    log = training.TrainingLog(tensorboard_dir)
    started = time.perf_counter()
    teacher = training.train_teacher(data, params.teacher, params.training, log, tables,
                                     params.item_item.eval_users)
    seconds['teacher'] = time.perf_counter() - started
    size = training.student_size(data, teacher, params.student, params.distillation)
    with training.teacher_outputs(data, teacher, params.training) as distillation_data:
      started = time.perf_counter()
      fp32 = training.distil(distillation_data, teacher, size, params.training,
                             params.distillation, log, params.item_item.eval_users)
      seconds['distillation'] = time.perf_counter() - started
      started = time.perf_counter()
      training.quantize(distillation_data, teacher, fp32, params.training, params.distillation,
                        log, params.item_item.eval_users)
      seconds['quantization_aware_training'] = time.perf_counter() - started
  return seconds


def main(argv: List[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output', required=True, help='OUTPUT of a pipeline run')
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--epochs', type=int, default=2, help='of the teacher and distillation')
  args = parser.parse_args(argv)

  params = {feedback: trainer_params(feedback, args.epochs)
            for feedback in (features.EXPLICIT, features.IMPLICIT)}
  data = transformed_data.training_data(args.output, params[features.EXPLICIT].transform,
                                        params[features.EXPLICIT].training)
  tables = training.fit_item_item(data, params[features.EXPLICIT].teacher,
                                  params[features.EXPLICIT].item_item)
  rows = []
  for round_number in range(1, args.rounds + 1):
    seconds = {feedback: one_round(data, params[feedback], tables) for feedback in params}
    rows.append(seconds)
    print(f'round {round_number}: ' + ', '.join(
        f'{phase} {seconds[features.EXPLICIT][phase]:.1f} s explicit / '
        f'{seconds[features.IMPLICIT][phase]:.1f} s implicit' for phase in PHASES), flush=True)
  print(f'\n| round | {" | ".join(f"{phase} explicit s | implicit s" for phase in PHASES)} |')
  print('|---' * (1 + 2 * len(PHASES)) + '|')
  for number, seconds in enumerate(rows, 1):
    print(f'| {number} | ' + ' | '.join(
        f'{seconds[features.EXPLICIT][phase]:.1f} | {seconds[features.IMPLICIT][phase]:.1f}'
        for phase in PHASES) + ' |')
  totals = {feedback: sum(sum(seconds[feedback].values()) for seconds in rows)
            for feedback in params}
  print(f'\nAll phases, all rounds: explicit {totals[features.EXPLICIT]:.1f} s, implicit '
        f'{totals[features.IMPLICIT]:.1f} s (implicit / explicit '
        f'{totals[features.IMPLICIT] / totals[features.EXPLICIT]:.2f})')


if __name__ == '__main__':
  main(sys.argv[1:])
