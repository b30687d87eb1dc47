-- 0010: what the dormancy job and the ticket lists need.

-- When an account last became active again (from disabled or removed), by the
-- dormancy job or by a person. The dormancy job counts silence from the latest of
-- created_at, last_call_at and this: an agent re-activated by a refill must get a
-- full period before it can be disabled again, even though its last call is old.
-- The trigger fills it for every such change unless the statement sets it itself
-- (the job does, with its own clock).
ALTER TABLE accounts ADD COLUMN reactivated_at timestamptz;

CREATE FUNCTION accounts_reactivated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.reactivated_at IS NOT DISTINCT FROM OLD.reactivated_at THEN
        NEW.reactivated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER accounts_reactivated BEFORE UPDATE OF status ON accounts
    FOR EACH ROW WHEN (NEW.status = 'active' AND OLD.status <> 'active')
    EXECUTE FUNCTION accounts_reactivated();

-- Ticket lists: by who opened them, newest activity first.
CREATE INDEX tickets_opened_by ON tickets (opened_by_user_id);
CREATE INDEX tickets_updated ON tickets (updated_at);
