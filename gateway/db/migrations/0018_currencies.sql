-- 0018: accounts in currencies other than their parent's, the operator's exchange-rate
-- table, and cross-currency money moves that keep both amounts on the ledger
-- (gateway/agents/exchange.py, gateway/agents/money.py).

-- One quote: 1 unit of from_currency is worth ``rate`` units of to_currency from
-- effective_from on, until a later quote of the same pair (in either direction)
-- replaces it. Rows are never changed: a ledger entry names the quote it used.
CREATE TABLE exchange_rates (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_currency       text NOT NULL CHECK (from_currency ~ '^[A-Z]{3}$'),
    to_currency         text NOT NULL CHECK (to_currency ~ '^[A-Z]{3}$'),
    -- Exact decimal, at most 12 places: conversions are done on the fraction it is.
    rate                numeric(24, 12) NOT NULL CHECK (rate > 0),
    effective_from      timestamptz NOT NULL,
    note                text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    created_by_user_id  bigint REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (from_currency <> to_currency),
    UNIQUE (from_currency, to_currency, effective_from)
);
-- "The quote in force at T" for an unordered pair: the latest effective_from <= T.
CREATE INDEX exchange_rates_pair ON exchange_rates
    (least(from_currency, to_currency), greatest(from_currency, to_currency), effective_from);

-- An entry of a cross-currency move: its amount is in its own account's currency (as
-- every entry), and these say what the other side moved, in its currency, and at which
-- quote (1 exchange_quote's first currency = exchange_rate of its second).
ALTER TABLE ledger_entries
    ADD COLUMN counter_amount_micros bigint,
    ADD COLUMN counter_currency text CHECK (counter_currency ~ '^[A-Z]{3}$'),
    ADD COLUMN exchange_rate numeric(24, 12),
    ADD COLUMN exchange_quote text CHECK (exchange_quote ~ '^[A-Z]{3}/[A-Z]{3}$'),
    ADD COLUMN exchange_rate_id bigint REFERENCES exchange_rates (id),
    ADD CONSTRAINT ledger_entries_exchange_whole CHECK (
        (counter_amount_micros IS NULL) = (counter_currency IS NULL)
        AND (counter_currency IS NULL) = (exchange_rate IS NULL)
        AND (exchange_rate IS NULL) = (exchange_quote IS NULL)
        AND (exchange_quote IS NULL) = (exchange_rate_id IS NULL));
