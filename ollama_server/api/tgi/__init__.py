"""The Hugging Face TGI dialect: /generate, /generate_stream, POST /, /info."""
