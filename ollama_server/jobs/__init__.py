"""Evaluation, data-generation and conversion jobs: the queue, its worker and what each job type does."""
