"""Test helpers (a local OpenAI-compatible server)."""
