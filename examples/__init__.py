"""Example automation files.

Installed as `connector.examples` (package data), so `ftconnect demo` finds demo.yaml in a
wheel as well as in this repo.
"""
