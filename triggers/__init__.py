"""Trigger declarations: one module per trigger type (see DESIGN.md)."""
