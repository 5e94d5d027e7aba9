"""distillery: LLM distillation through an API, and catching it."""

__version__ = "0.1.0"
