"""The contract every layer shares: feature names (`features`), the serving signatures and their
inputs (`signatures`), PredictRequests built from them (`requests`, `tensor_codec`) and the
warmup file TF Serving replays (`warmup`). It imports nothing else of the project."""
