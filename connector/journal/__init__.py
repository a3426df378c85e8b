"""The durable record in SQLite: events (each key once), runs and steps, what was submitted,
where the pollers got to, and the lock that keeps one daemon per journal.
"""
