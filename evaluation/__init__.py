"""Offline evaluation under the project's fixed protocol, one implementation for every caller
(the Trainer's summary, the RetrievalEvaluator, the quality benchmark).

`protocol`: an evaluated split's queries and targets (`EvalData`) and its slices (the split
itself is `contract.split_rules`); `metrics`: ranking and rating metrics; `baselines`: popularity, EASE and the mean
rating; `saved_models`: what is asked of an exported SavedModel; `evaluate`: every exported model
and the baselines on one split. It imports only `contract` of the project.
"""
