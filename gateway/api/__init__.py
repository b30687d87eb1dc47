"""The HTTP management API (``/api/v1``, OpenAPI at ``/docs``) and the agent portal."""
