"""`nlp-serve eval`: a labelled JSONL set through a model, scored with each task's standard
metrics (docs/evaluation.md)."""
