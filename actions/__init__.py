"""Action declarations: one module per action type, each with `ACTION = ActionSpec(...)`."""
