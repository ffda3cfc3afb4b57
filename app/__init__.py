"""nlp-serve: production model serving for NLP."""

__version__ = "0.1.0"
