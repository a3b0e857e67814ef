"""Reliability suite: a bad-input corpus, soak and fault tests against one real server."""
