"""The HTTP API: layers, features and tiles over FastAPI."""
