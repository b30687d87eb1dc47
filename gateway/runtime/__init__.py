"""Wiring and running: the service container, worker processes, embedded engines,
the ops endpoint, demo data."""
