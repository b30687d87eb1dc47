"""The fields of the Redis hashes the balance scripts keep (``lua/*.lua``), named once
for the Python code that reads them. Each script's header says which it writes."""

from __future__ import annotations

# An account hash (load_account.lua creates it; reserve, extend, settle move it).
BALANCE = "bal"  # micros, as PostgreSQL has it plus debits not committed yet
CREDIT_LIMIT = "lim"  # micros
HELD_MICROS = "held"  # money held by the account's calls in progress
CALLS = "calls"  # calls up (reserved or answered)
MAX_CALLS = "maxc"  # -1: no limit
STATUS = "st"  # active, disabled, removed
MONEY_VERSION = "lver"  # the PostgreSQL money version mirrored (apply_move.lua)
EXPOSURE = "exp"  # top of a tree: micros granted to its calls but not held
AVERAGE_CALL = "avgd"  # a customer's average answered slice call (s)

# A session hash: one call's reservation.
STATE = "st"  # see the states below
GRANTED = "granted"  # seconds the switch was told
HELD_S = "held"  # seconds the holds cover
HOLDS = "holds"  # JSON: micros held per level
ACCOUNTS = "accounts"  # JSON: the account hash keys, customer first
ANSWERED_AT = "answered_at"  # unix seconds
REACH = "reach"  # what the front needs to tell the switch to hang up
HUNG_UP = "disc"  # set once a hang-up of the call was claimed
COA = "coa"  # set once a CoA-Request (Session-Timeout) for the cut call was claimed
COA_ACKED = "coa_ok"  # the switch acknowledged it: it ends the call by itself

# Session states, as Redis returns them.
RESERVED, ANSWERED, SETTLED, RELEASED = b"reserved", b"answered", b"settled", b"released"
LIVE_STATES = (RESERVED, ANSWERED)
