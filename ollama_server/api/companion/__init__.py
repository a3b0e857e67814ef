"""The companion API of the training loop: jobs, shards, power profiles, service information."""
