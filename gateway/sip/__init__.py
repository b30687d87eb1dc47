"""The SIP front: a stateless-call, transaction-stateful redirect server.

INVITE in, ``302 Moved Temporarily`` (the route's carrier gateways and the credit
time) or a refusal out. Layers as for RADIUS: ``message`` (bytes <-> requests and
responses), ``listener`` (UDP and TCP, transactions, bounded work), ``process``
(request -> ``Calls.authorize`` -> answer), ``replies`` (the one table from refusal
reasons to SIP codes), ``server`` (the service), ``routing`` (routes by rate group).
"""
