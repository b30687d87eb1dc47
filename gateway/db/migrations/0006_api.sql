-- 0006: what the management API needs: login sessions, add-funds requests, and the
-- bookkeeping of soft deletes and password changes.

-- A login session: the API token or the portal cookie. Only a SHA-256 of the token
-- is kept, so a database dump does not hand out logins.
CREATE TABLE api_sessions (
    token_sha256    bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    remote_addr     text NOT NULL DEFAULT ''
);
CREATE INDEX api_sessions_user ON api_sessions (user_id);
CREATE INDEX api_sessions_expiry ON api_sessions (expires_at);

ALTER TABLE users ADD COLUMN password_changed_at timestamptz;
ALTER TABLE users ADD COLUMN email text NOT NULL DEFAULT '';

-- An agent (or customer) asks the operator for funds; an admin approves (the refill
-- is booked then, under the request's own idempotency key) or rejects.
CREATE TABLE add_funds_requests (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          bigint NOT NULL REFERENCES accounts (id),
    requested_by        bigint NOT NULL REFERENCES users (id),
    amount_micros       bigint NOT NULL CHECK (amount_micros > 0),
    note                text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by          bigint REFERENCES users (id),
    decided_at          timestamptz,
    decision_note       text NOT NULL DEFAULT '',
    ledger_entry_id     bigint REFERENCES ledger_entries (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
CREATE INDEX add_funds_requests_account ON add_funds_requests (account_id, created_at);
CREATE INDEX add_funds_requests_pending ON add_funds_requests (created_at) WHERE status = 'pending';

-- Why an account is disabled: by a person, or by the dormancy job (which may
-- re-activate what it disabled, and only that).
ALTER TABLE accounts ADD COLUMN disabled_reason text NOT NULL DEFAULT ''
    CHECK (disabled_reason IN ('', 'manual', 'dormancy'));

CREATE INDEX ledger_created_by ON ledger_entries (created_by_user_id, created_at);
