"""Live balances in Redis: reservations over the account chain, settlement, mirror."""
