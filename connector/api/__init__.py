"""The HTTP API: call actions, follow runs and events, subscribe to triggers."""
