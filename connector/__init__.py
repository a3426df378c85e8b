"""finetuning-connector: an automation connector for AI music generation."""
