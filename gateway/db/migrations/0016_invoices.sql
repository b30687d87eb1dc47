-- 0016: invoices (statements of an account's period), their gapless numbering, and
-- the tax settings of an account (gateway/agents/invoices.py, README "Invoices").

-- VAT-style tax on the period's charges: a rate in basis points (2000 = 20 %) and
-- whether the prices already include it (inclusive) or it comes on top (exclusive).
ALTER TABLE accounts
    ADD COLUMN tax_rate_bp integer NOT NULL DEFAULT 0 CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    ADD COLUMN tax_inclusive boolean NOT NULL DEFAULT false;

-- One row per issuer and year: the last number given. The row is locked and bumped in
-- the transaction that inserts the invoice, so a rolled-back issue gives its number
-- back and numbers have no gaps (a sequence would lose them). issuer_key is the
-- issuing agent's account id, 0 for the operator.
CREATE TABLE invoice_counters (
    issuer_key      bigint NOT NULL CHECK (issuer_key >= 0),
    year            integer NOT NULL CHECK (year BETWEEN 2000 AND 9999),
    last_number     integer NOT NULL DEFAULT 0 CHECK (last_number >= 0),
    PRIMARY KEY (issuer_key, year)
);

CREATE TABLE invoices (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id              bigint NOT NULL REFERENCES accounts (id),
    -- The account's parent agent, or NULL when the operator issues (top-level account).
    issuer_account_id       bigint REFERENCES accounts (id),
    year                    integer NOT NULL,
    seq                     integer NOT NULL CHECK (seq >= 1),
    number                  text NOT NULL UNIQUE,
    period_start            timestamptz NOT NULL,
    period_end              timestamptz NOT NULL,
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    opening_balance_micros  bigint NOT NULL,
    closing_balance_micros  bigint NOT NULL,
    -- What the period charged for service (calls, recurring fees): the tax base.
    charges_micros          bigint NOT NULL,
    tax_rate_bp             integer NOT NULL,
    tax_inclusive           boolean NOT NULL,
    net_micros              bigint NOT NULL,
    tax_micros              bigint NOT NULL,
    gross_micros            bigint NOT NULL,
    -- The statement's lines as issued (money moves, calls by destination): an issued
    -- invoice never changes, whatever later happens to rates or names.
    body                    jsonb NOT NULL,
    issued_at               timestamptz NOT NULL DEFAULT now(),
    issued_by_user_id       bigint REFERENCES users (id),
    CHECK (period_end > period_start),
    -- A restart or a second gateway finds the period taken and issues nothing.
    UNIQUE (account_id, period_start)
);
CREATE UNIQUE INDEX invoices_issuer_number ON invoices (coalesce(issuer_account_id, 0), year, seq);
CREATE INDEX invoices_issuer ON invoices (issuer_account_id);
CREATE INDEX invoices_period ON invoices (period_start);
