"""From an event to the work it starts: matching automations, running their steps in order
with a journal entry before and after each, the contexts plugins receive.
"""
