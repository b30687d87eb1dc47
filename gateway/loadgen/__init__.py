"""``gateway loadgen``: a RADIUS switch simulator that places whole calls.

One process, plain Python on epoll, with every datagram built before the clock
starts, so the generator is not what a benchmark measures (it reports its own CPU
to prove it). The pieces, each usable alone:

- ``plan``: which calls to place (caller, destination, length, meant to be refused);
- ``packets``: the calls' requests as finished datagrams, and re-signing one for
  another identifier;
- ``engine``: the send/receive loop (pacing, retransmission, identifiers per socket);
- ``stats``: latency percentiles, the progress line and the summary;
- ``population``: test customers created in PostgreSQL, or the demo's;
- ``verify``: the billing check against PostgreSQL after the run;
- ``cli``: the command line.
"""
