-- 0014: recurring charges (monthly fees, DID rentals, setup fees) down the reseller
-- chain, and DIDs: numbers owned by accounts (gateway/agents/products.py, recurring.py).

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check,
    ADD CONSTRAINT ledger_entries_kind_check CHECK (kind IN ('refill', 'payment', 'transfer',
        'commission', 'commission_withdraw', 'call_debit', 'adjustment', 'recurring'));

ALTER TABLE accounts DROP CONSTRAINT accounts_disabled_reason_check,
    ADD CONSTRAINT accounts_disabled_reason_check
        CHECK (disabled_reason IN ('', 'manual', 'dormancy', 'fraud', 'unpaid'));

-- A product is sold by its owner (NULL: the operator) to the accounts right below it.
-- An agent's product resells its parent's (base_product_id): the agent pays the base
-- price when its customer pays the agent's, like a call debits every wholesale level at
-- its own rate.
CREATE TABLE products (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_account_id    bigint REFERENCES accounts (id) ON DELETE RESTRICT,
    base_product_id     bigint REFERENCES products (id) ON DELETE RESTRICT,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind                text NOT NULL CHECK (kind IN ('monthly', 'did_rental', 'setup')),
    price_micros        bigint NOT NULL CHECK (price_micros >= 0),
    -- What happens when the payer cannot pay: suspend the account (and retry), charge
    -- into the credit limit, or keep retrying while the period lasts.
    on_unpaid           text NOT NULL DEFAULT 'retry'
                        CHECK (on_unpaid IN ('suspend', 'negative', 'retry')),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (base_product_id IS DISTINCT FROM id)
);
CREATE UNIQUE INDEX products_owner_name ON products (coalesce(owner_account_id, 0), name);

-- DIDs: inbound numbers (E.164 digits) owned by an account; inbound calls to them are
-- the owner's (gateway/authz/identify.py, method "did").
CREATE TABLE dids (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number          text NOT NULL UNIQUE CHECK (number ~ '^[0-9]{1,32}$'),
    account_id      bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dids_account ON dids (account_id);
CREATE TRIGGER dids_directory AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON dids FOR EACH STATEMENT EXECUTE FUNCTION directory_notify_changed();

-- An account's subscription to a product, charged each period from starts_on on
-- bill_day (a setup fee: once, on starts_on).
CREATE TABLE subscriptions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES accounts (id),
    product_id      bigint NOT NULL REFERENCES products (id),
    did_id          bigint REFERENCES dids (id) ON DELETE SET NULL,
    starts_on       date NOT NULL,
    ends_on         date,
    bill_day        smallint NOT NULL CHECK (bill_day BETWEEN 1 AND 28),
    created_by_user_id bigint REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on IS NULL OR ends_on >= starts_on)
);
CREATE INDEX subscriptions_account ON subscriptions (account_id);

-- One row per subscription and period: the charge job's memory. The unique key and
-- the ledger's idempotency key ('recurring:<subscription>:<period>') make sure a
-- restart or a second gateway never charges a period twice.
CREATE TABLE recurring_charges (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id     bigint NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    period_start        date NOT NULL,
    status              text NOT NULL DEFAULT 'due'
                        CHECK (status IN ('due', 'charged', 'unpaid', 'abandoned')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    amount_micros       bigint NOT NULL DEFAULT 0,  -- what the subscriber paid
    ledger_ids          bigint[] NOT NULL DEFAULT '{}',
    detail              text NOT NULL DEFAULT '' CHECK (length(detail) <= 500),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, period_start)
);
CREATE INDEX recurring_charges_due ON recurring_charges (next_attempt_at) WHERE status IN ('due', 'unpaid');

-- Inbound calls to a DID are rated at each charged level's inbound rate group, looked
-- up with the DID number; none: the level gets them free.
ALTER TABLE accounts ADD COLUMN inbound_rate_group_id bigint REFERENCES rate_groups (id)
    ON DELETE RESTRICT;
DROP TRIGGER accounts_directory_update ON accounts;
CREATE TRIGGER accounts_directory_update
    AFTER UPDATE OF kind, parent_id, billing_mode, rate_group_id, status, currency,
                    max_concurrent_calls, credit_limit_micros, inbound_rate_group_id
    ON accounts FOR EACH STATEMENT EXECUTE FUNCTION directory_notify_changed();
