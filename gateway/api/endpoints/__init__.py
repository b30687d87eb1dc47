"""One router per area of the management API."""
