-- 0017: low-balance care. An account may carry a threshold of available money
-- (balance + credit limit): when it falls below, its contacts get a mail and the
-- alerts webhook a POST, once per crossing, and the parent agent (transfer mode) may
-- refill it automatically, up to a monthly limit. gateway/agents/low_balance.py.

ALTER TABLE accounts
    ADD COLUMN low_balance_threshold_micros bigint
        CHECK (low_balance_threshold_micros >= 0),  -- NULL: no threshold
    ADD COLUMN auto_refill_micros bigint NOT NULL DEFAULT 0
        CHECK (auto_refill_micros >= 0),  -- 0: no auto-refill
    ADD COLUMN auto_refill_monthly_limit_micros bigint NOT NULL DEFAULT 0
        CHECK (auto_refill_monthly_limit_micros >= 0),
    ADD CONSTRAINT accounts_auto_refill_check CHECK (
        auto_refill_micros = 0
        OR (low_balance_threshold_micros IS NOT NULL
            AND auto_refill_monthly_limit_micros >= auto_refill_micros));

-- The watch joins only the accounts that have a threshold.
CREATE INDEX accounts_low_balance ON accounts (id) WHERE low_balance_threshold_micros IS NOT NULL;

-- The state of each watched account, one row each, changed only by conditional
-- UPDATEs so that two gateways never both see the same crossing as theirs.
-- crossings numbers the crossings (the notices' and the refill's keys carry it).
CREATE TABLE low_balance_state (
    account_id      bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    below           boolean NOT NULL DEFAULT false,
    crossings       bigint NOT NULL DEFAULT 0 CHECK (crossings >= 0),
    crossed_at      timestamptz,
    rearmed_at      timestamptz,
    refill_due      boolean NOT NULL DEFAULT false,  -- an auto-refill of this crossing waits
    refill_status   text NOT NULL DEFAULT ''
                    CHECK (refill_status IN ('', 'moved', 'no_funds', 'limit_reached',
                                             'not_transfer_mode', 'refused')),
    refill_detail   text NOT NULL DEFAULT '',
    refill_at       timestamptz,
    CHECK (NOT refill_due OR below)
);

-- The call path reads the threshold from the directory (the Accept's low-balance
-- hint): tell every gateway when it changes.
CREATE TRIGGER accounts_directory_low_balance
    AFTER UPDATE OF low_balance_threshold_micros
    ON accounts FOR EACH STATEMENT EXECUTE FUNCTION directory_notify_changed();
