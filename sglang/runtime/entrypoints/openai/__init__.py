"""The OpenAI-compatible API: protocol models, request planning and response building."""
