"""Where events come in: the webhook listener (on a hardened HTTP server) and the pollers.
Everything that enters goes through `Runtime.submit_event`, the single door.
"""
