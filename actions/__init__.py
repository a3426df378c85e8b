"""Action declarations: one module per action type (see DESIGN.md)."""
