"""The contract every layer shares: feature names (`features`), the serving signatures and their
inputs (`signatures`), PredictRequests built from them (`requests`, `tensor_codec`), the
warmup file TF Serving replays (`warmup`), the item catalogue a model carries (`catalogue`) and
numbered version directories (`versions`). It imports nothing else of the project."""
