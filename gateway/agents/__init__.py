"""Management service: agents, customers, money moves, reports."""
