"""Schedulers that stand between the HTTP routes and a model's run_batch()."""
