"""What a Trainer run writes, by name: the models it trains and where their artefacts go.

The Trainer's `model` artifact holds the candidate (`CANDIDATE`, the int8 student the pipeline
gates and pushes); its `model_run` artifact holds the rest, laid out as below. The evaluator, the
report, the teacher's pusher and the benchmarks find a run's outputs here, without importing
the training code.
"""
# Model names, as they appear in the training summary, the metrics and the report.
TEACHER = 'teacher'
STUDENT_SCRATCH = 'student_scratch'  # the student trained without the teacher (a reference)
STUDENT_FP32 = 'student_fp32'  # the distilled student
STUDENT_INT8 = 'student_int8'  # the distilled student after QAT, with int8 tables
CANDIDATE = STUDENT_INT8  # the model the pipeline evaluates, gates and pushes

# Under `model_run`: SavedModel directories, the TFLite file, TensorBoard logs, the summary.
SAVED_MODEL_DIRS = {TEACHER: 'teacher', STUDENT_SCRATCH: 'student_scratch',
                    STUDENT_FP32: 'student_fp32'}
TFLITE_FILE = 'student_int8.tflite'
# In the `model` artifact, beside the candidate's serving directory: the weights that later
# runs start from (`models.warm_start`).
WARM_START_DIR = 'warm_start'
TENSORBOARD_DIR = 'tensorboard'
SUMMARY_FILE = 'training_summary.json'
