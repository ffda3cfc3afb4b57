"""The HTTP surfaces: the native task routes (one table, tasks.py), health, models, admin,
and the OpenAI, Hugging Face and Open Inference Protocol v2 surfaces; each calls the typed
core (app/core.py)."""
