"""``serve``: our model behind an OpenAI-compatible HTTP API (FastAPI + uvicorn)."""
