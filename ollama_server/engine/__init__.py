"""Inference engine: requests in, chunks out; knows nothing about HTTP or dialects."""
