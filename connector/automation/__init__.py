"""Automations as declared: the plugin API (specs, registry, validators, templates) and the
automations file (read, validated, modelled). Imports no runtime: it can be read, and a
file checked, without starting anything.
"""
