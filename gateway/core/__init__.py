"""Below everything: the exception tree, refusal reasons, logs, metrics, periodic jobs."""
