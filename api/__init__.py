"""The HTTP API (FastAPI): cited answers, search, passages, health, metrics and the chat widget."""
