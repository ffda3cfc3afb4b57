"""Schedulers that stand between the HTTP routes and a model's pipeline (app/pipeline.py):
they decide when, and with which other items, ServedModel.encode, forward_rows and decode run."""
