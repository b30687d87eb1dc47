"""Real-time RADIUS/SIP prepaid billing gateway for VoIP resellers."""

__version__ = "0.1.0"
