"""One APIRouter per task, plus health and models."""
