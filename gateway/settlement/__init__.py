"""From Redis to PostgreSQL: the committer, CDR rows, commit notices, reconciliation."""
