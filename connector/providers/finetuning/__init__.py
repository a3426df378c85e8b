"""Finetuning.ai's public API v1.2: the client, its models, key and id formats."""
