-- 0012: disconnect causes as ITU-T Q.850 values. The cause as the switch wrote it
-- moves to disconnect_cause_raw; disconnect_cause becomes the Q.850 number (NULL
-- when the raw value does not read as one, e.g. the gateway's own 'nas-restart').
-- Existing rows are converted where the raw value says which encoding it is: one
-- or two hex digits (Cisco's h323-disconnect-cause, "10" = 16), or an RFC 2866
-- Acct-Terminate-Cause name with a plain Q.850 equivalent (gateway/core/q850.py).
ALTER TABLE cdrs RENAME COLUMN disconnect_cause TO disconnect_cause_raw;
ALTER TABLE cdrs ADD COLUMN disconnect_cause smallint
    CHECK (disconnect_cause BETWEEN 1 AND 127);

UPDATE cdrs SET disconnect_cause = CASE
    WHEN disconnect_cause_raw ~* '^(0x)?[0-7]?[0-9a-f]$'
        THEN nullif(('x' || lpad(regexp_replace(disconnect_cause_raw, '^0[xX]', ''), 8, '0'))
                    ::bit(32)::integer, 0)
    WHEN disconnect_cause_raw IN ('User-Request', 'Session-Timeout') THEN 16
    WHEN disconnect_cause_raw = 'Idle-Timeout' THEN 102
    WHEN disconnect_cause_raw IN ('Lost-Carrier', 'Lost-Service', 'NAS-Error', 'Port-Error')
        THEN 41
    WHEN disconnect_cause_raw = 'Service-Unavailable' THEN 63
END
WHERE disconnect_cause_raw <> '';
