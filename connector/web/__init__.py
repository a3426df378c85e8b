"""The web page: run history, traces, events and hooks, served beside the HTTP API."""
