"""LLM clients (OpenAI-compatible and offline), response cache, prompts, builders and validators."""
