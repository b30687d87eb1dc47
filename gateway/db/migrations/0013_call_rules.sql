-- 0013: call rules per account (fraud and margin protection at authorization).
-- One row per account that sets rules; every level of a call's chain applies its own
-- and the strictest wins (gateway/rating/limits.py for destinations, prices and
-- margins; gateway/balance/lua/lib.lua for spend caps and attempt rates). Loaded by the directory with the
-- accounts, so a change reaches every gateway through 'gateway_directory'.

CREATE TABLE call_rules (
    account_id                bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- Number prefixes (digits, normalized international form). allow empty: any.
    allow_prefixes            text[] NOT NULL DEFAULT '{}',
    block_prefixes            text[] NOT NULL DEFAULT '{}',
    -- The dearest per-minute price a customer below may pay; NULL: no limit.
    max_price_per_min_micros  bigint CHECK (max_price_per_min_micros >= 0),
    -- Wholesale agents: refuse a call sold below own price + min_margin per minute.
    negative_margin           text NOT NULL DEFAULT 'allow'
                              CHECK (negative_margin IN ('allow', 'refuse')),
    min_margin_micros         bigint NOT NULL DEFAULT 0 CHECK (min_margin_micros >= 0),
    -- Spend caps on the account's own debits for calls (NULL: none), held in Redis
    -- with the balance and checked in the reservation's atomic step (lib.lua).
    max_spend_hour_micros     bigint CHECK (max_spend_hour_micros >= 0),
    max_spend_day_micros      bigint CHECK (max_spend_day_micros >= 0),
    max_spend_call_micros     bigint CHECK (max_spend_call_micros >= 0),
    -- Call attempts (authorizations reaching the reservation) of the account and, for
    -- an agent, its whole subtree; NULL: no limit.
    max_attempts_per_s        integer CHECK (max_attempts_per_s >= 0),
    max_attempts_per_min      integer CHECK (max_attempts_per_min >= 0),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    updated_by                text NOT NULL DEFAULT '',
    CHECK (cardinality(allow_prefixes) <= 1000 AND cardinality(block_prefixes) <= 1000)
);

-- The directory reloads its accounts table (which carries the rules) on this payload.
CREATE FUNCTION call_rules_notify_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gateway_directory', 'accounts');
    RETURN NULL;
END $$;

CREATE TRIGGER call_rules_directory AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON call_rules FOR EACH STATEMENT EXECUTE FUNCTION call_rules_notify_changed();

-- Velocity checks (gateway/calls/fraud.py) disable an account with reason 'fraud' and
-- say why in disabled_detail; their notices go to the mail outbox, and to a webhook
-- through the same outbox (channel 'webhook': recipient is the URL, body the JSON).
ALTER TABLE accounts DROP CONSTRAINT accounts_disabled_reason_check,
    ADD CONSTRAINT accounts_disabled_reason_check
        CHECK (disabled_reason IN ('', 'manual', 'dormancy', 'fraud')),
    ADD COLUMN disabled_detail text NOT NULL DEFAULT '' CHECK (length(disabled_detail) <= 500);
ALTER TABLE notification_outbox
    ADD COLUMN channel text NOT NULL DEFAULT 'mail' CHECK (channel IN ('mail', 'webhook')),
    DROP CONSTRAINT notification_outbox_recipient_check,
    ADD CONSTRAINT notification_outbox_recipient_check
        CHECK (channel <> 'mail' OR recipient LIKE '%@%');
