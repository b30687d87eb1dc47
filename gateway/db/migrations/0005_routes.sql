-- 0005: routes for the SIP redirect front: per rate group, a destination prefix to
-- an ordered list of carrier gateways.
--
-- A call is routed by the longest prefix of its normalized number among the routes
-- of the customer's rate group. A route with no gateway blocks its prefix (404).
-- Gateways are tried by ascending priority; equal priorities are ordered per call
-- at random in proportion to their weight (weight 0: only after the others).
--
-- Changes are announced like rates (0003): channel 'gateway_routes', payload the
-- changed rate_group ids comma-separated, or '*' (TRUNCATE, or too long a payload).

CREATE TABLE routes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rate_group_id   bigint NOT NULL REFERENCES rate_groups (id) ON DELETE CASCADE,
    -- Digits, up to 32; '' is the group's catch-all route.
    prefix          text NOT NULL
                    CHECK (length(prefix) <= 32 AND ltrim(prefix, '0123456789') = ''),
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rate_group_id, prefix)
);

CREATE TABLE route_gateways (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    route_id    bigint NOT NULL REFERENCES routes (id) ON DELETE CASCADE,
    -- A host name or an IPv4/IPv6 address (IPv6 without brackets).
    host        text NOT NULL CHECK (
                    length(host) BETWEEN 1 AND 253
                    AND (host ~ '^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$'
                         OR (host LIKE '%:%' AND ltrim(host, '0123456789abcdefABCDEF:.') = ''))),
    port        integer NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport   text NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    priority    integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 65535),
    weight      integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 0 AND 65535),
    UNIQUE (route_id, host, port, transport)
);
CREATE INDEX route_gateways_route ON route_gateways (route_id);

CREATE FUNCTION routes_notify_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        ids := '*';
    ELSIF TG_TABLE_NAME = 'routes' THEN
        IF TG_OP = 'INSERT' THEN
            SELECT string_agg(DISTINCT rate_group_id::text, ',') INTO ids FROM new_rows;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT string_agg(DISTINCT rate_group_id::text, ',') INTO ids FROM old_rows;
        ELSE
            SELECT string_agg(g::text, ',') INTO ids FROM (
                SELECT rate_group_id FROM new_rows UNION SELECT rate_group_id FROM old_rows
            ) AS changed (g);
        END IF;
    ELSE
        -- route_gateways: the groups of the routes the changed rows belong to. Rows
        -- removed by a route's own deletion find no route here; that DELETE on
        -- routes has announced the group already.
        IF TG_OP = 'INSERT' THEN
            SELECT string_agg(DISTINCT r.rate_group_id::text, ',') INTO ids
                FROM new_rows n JOIN routes r ON r.id = n.route_id;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT string_agg(DISTINCT r.rate_group_id::text, ',') INTO ids
                FROM old_rows o JOIN routes r ON r.id = o.route_id;
        ELSE
            SELECT string_agg(DISTINCT r.rate_group_id::text, ',') INTO ids FROM (
                SELECT route_id FROM new_rows UNION SELECT route_id FROM old_rows
            ) AS changed (route_id) JOIN routes r ON r.id = changed.route_id;
        END IF;
    END IF;
    IF ids IS NULL THEN
        RETURN NULL;  -- the statement touched no row
    END IF;
    IF octet_length(ids) >= 8000 THEN
        ids := '*';
    END IF;
    PERFORM pg_notify('gateway_routes', ids);
    RETURN NULL;
END $$;

-- Transition tables need one trigger per event (as in 0003).
CREATE TRIGGER routes_notify_insert AFTER INSERT ON routes
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION routes_notify_changed();
CREATE TRIGGER routes_notify_update AFTER UPDATE ON routes
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION routes_notify_changed();
CREATE TRIGGER routes_notify_delete AFTER DELETE ON routes
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION routes_notify_changed();
CREATE TRIGGER routes_notify_truncate AFTER TRUNCATE ON routes
    FOR EACH STATEMENT EXECUTE FUNCTION routes_notify_changed();

CREATE TRIGGER route_gateways_notify_insert AFTER INSERT ON route_gateways
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION routes_notify_changed();
CREATE TRIGGER route_gateways_notify_update AFTER UPDATE ON route_gateways
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION routes_notify_changed();
CREATE TRIGGER route_gateways_notify_delete AFTER DELETE ON route_gateways
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION routes_notify_changed();
CREATE TRIGGER route_gateways_notify_truncate AFTER TRUNCATE ON route_gateways
    FOR EACH STATEMENT EXECUTE FUNCTION routes_notify_changed();
