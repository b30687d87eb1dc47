-- 0015: time-of-day/weekday rates, the rounding of a call's cost, and sub-second
-- increments.
--
-- A rate group reads its rates' periods in its own time zone (an IANA name, checked
-- by the application against its zone database) and rounds each call's final cost
-- per level to cost_decimals (6: the micro-unit, as before), up or half-up.
-- rates.periods is the canonical text of gateway/rating/periods.py
-- ('mon-fri 08:00-18:00 0.1 0.05; sat 09:00-13:00 0.08'), '' for one price at all
-- times. Changing either fires the existing gateway_rates notifications (0003).

ALTER TABLE rate_groups
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC'
        CHECK (time_zone ~ '^[A-Za-z0-9_+\-/]{1,64}$'),
    ADD COLUMN cost_decimals smallint NOT NULL DEFAULT 6 CHECK (cost_decimals BETWEEN 0 AND 6),
    ADD COLUMN cost_rounding text NOT NULL DEFAULT 'up'
        CHECK (cost_rounding IN ('up', 'half_up'));

ALTER TABLE rates
    ADD COLUMN periods text NOT NULL DEFAULT '' CHECK (length(periods) <= 1000),
    -- Sub-second increments after the first (a divisor of a second); NULL: whole
    -- seconds (next_increment_s). Needs next_increment_s = 1.
    ADD COLUMN next_increment_ms integer
        CHECK (next_increment_ms IS NULL
               OR (next_increment_ms BETWEEN 1 AND 500 AND 1000 % next_increment_ms = 0
                   AND next_increment_s = 1));
