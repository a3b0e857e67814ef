"""llama-server's own (non-OpenAI) routes: /infill."""
