"""Models on disk: where they are, what they are called, the embedded default."""
