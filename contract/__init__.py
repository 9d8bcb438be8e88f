"""The contract every layer shares: feature names (`features`), the serving signatures and their
inputs (`signatures`), PredictRequests built from them (`requests`, `tensor_codec`), the
warmup file TF Serving replays (`warmup`), the item catalogue a model carries (`catalogue`) and
numbered version directories (`versions`) and the split rules, the per-user chronological cut
into train, eval and test (`split_rules`). It imports nothing else of the project."""
