"""Prompt-set generators. Each returns a PromptSet built for a given model's tokenizer."""
