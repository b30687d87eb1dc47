-- 0004: tell every gateway when the call directory changes (who may call, and who
-- pays): extensions, caller-IDs, and the accounts' tree, mode, rate group, status.
-- Channel 'gateway_directory', payload: the table name. One notification per
-- statement. Balance updates (the committer, money moves) do not fire it: the
-- accounts trigger is limited to the columns that change a call's chain.

CREATE FUNCTION directory_notify_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gateway_directory', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER extensions_directory AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON extensions FOR EACH STATEMENT EXECUTE FUNCTION directory_notify_changed();
CREATE TRIGGER caller_ids_directory AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON caller_ids FOR EACH STATEMENT EXECUTE FUNCTION directory_notify_changed();
CREATE TRIGGER accounts_directory_insert AFTER INSERT OR DELETE
    ON accounts FOR EACH STATEMENT EXECUTE FUNCTION directory_notify_changed();
CREATE TRIGGER accounts_directory_update
    AFTER UPDATE OF kind, parent_id, billing_mode, rate_group_id, status, currency,
                    max_concurrent_calls, credit_limit_micros
    ON accounts FOR EACH STATEMENT EXECUTE FUNCTION directory_notify_changed();
