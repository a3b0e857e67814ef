"""The Ollama dialect: /api/generate, /api/chat, /api/tags, /api/show, /api/ps and friends (NDJSON)."""
