"""Trigger declarations: one module per trigger type, each with `TRIGGER = TriggerSpec(...)`."""
