-- Per-tenant aggregates kept by triggers in the transaction of every write (the API's, the
-- ON DELETE SET NULL cascades', seed's and any other client's), so that an unfiltered count or
-- the stage statistics cost the same at 1,000 rows as at 1,000,000.
--
-- A tenant's figures are spread over 16 slots; a writing session adds its deltas to the slot of
-- its backend, so concurrent writers of one tenant do not queue on one row (a single counter row
-- per tenant serialises them, and deadlocks them once they touch two). A read sums the slots.
-- Within one statement the rows are touched in key order, and counts before stage totals, so two
-- sessions that share a slot lock in the same order.

CREATE TABLE tenant_counts (
    tenant_id uuid NOT NULL,
    module text NOT NULL CHECK (module IN ('accounts', 'contacts', 'leads', 'opportunities', 'activities')),
    slot smallint NOT NULL CHECK (slot BETWEEN 0 AND 15),
    count bigint NOT NULL,
    PRIMARY KEY (tenant_id, module, slot)
);

CREATE TABLE stage_totals (
    tenant_id uuid NOT NULL,
    stage text NOT NULL,
    slot smallint NOT NULL CHECK (slot BETWEEN 0 AND 15),
    count bigint NOT NULL,
    amount numeric NOT NULL,
    PRIMARY KEY (tenant_id, stage, slot)
);

CREATE FUNCTION aggregate_slot() RETURNS smallint LANGUAGE sql STABLE AS
$$ SELECT (pg_backend_pid() % 16)::smallint $$;

-- Adds each tenant's row delta of the table the trigger is on (TG_ARGV[0] names its module).
CREATE FUNCTION count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tenant_counts AS t (tenant_id, module, slot, count)
        SELECT tenant_id, TG_ARGV[0], aggregate_slot(), count(*) FROM new_rows
        GROUP BY tenant_id ORDER BY tenant_id
        ON CONFLICT (tenant_id, module, slot) DO UPDATE SET count = t.count + EXCLUDED.count;
    ELSE
        INSERT INTO tenant_counts AS t (tenant_id, module, slot, count)
        SELECT tenant_id, TG_ARGV[0], aggregate_slot(), -count(*) FROM old_rows
        GROUP BY tenant_id ORDER BY tenant_id
        ON CONFLICT (tenant_id, module, slot) DO UPDATE SET count = t.count + EXCLUDED.count;
    END IF;
    RETURN NULL;
END $$;

-- Adds each tenant's count and amount delta per stage of the opportunities a statement wrote;
-- stages whose figures did not move (an update of another column, a cascade's SET NULL) are
-- not touched.
CREATE FUNCTION total_stages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO stage_totals AS s (tenant_id, stage, slot, count, amount)
        SELECT tenant_id, stage, aggregate_slot(), count(*), sum(amount) FROM new_rows
        GROUP BY tenant_id, stage ORDER BY tenant_id, stage
        ON CONFLICT (tenant_id, stage, slot)
            DO UPDATE SET count = s.count + EXCLUDED.count, amount = s.amount + EXCLUDED.amount;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO stage_totals AS s (tenant_id, stage, slot, count, amount)
        SELECT tenant_id, stage, aggregate_slot(), -count(*), -sum(amount) FROM old_rows
        GROUP BY tenant_id, stage ORDER BY tenant_id, stage
        ON CONFLICT (tenant_id, stage, slot)
            DO UPDATE SET count = s.count + EXCLUDED.count, amount = s.amount + EXCLUDED.amount;
    ELSE
        INSERT INTO stage_totals AS s (tenant_id, stage, slot, count, amount)
        SELECT tenant_id, stage, aggregate_slot(), sum(n), sum(amount)
        FROM (
            SELECT tenant_id, stage, 1 AS n, amount FROM new_rows
            UNION ALL
            SELECT tenant_id, stage, -1, -amount FROM old_rows
        ) AS delta
        GROUP BY tenant_id, stage
        HAVING sum(n) <> 0 OR sum(amount) <> 0
        ORDER BY tenant_id, stage
        ON CONFLICT (tenant_id, stage, slot)
            DO UPDATE SET count = s.count + EXCLUDED.count, amount = s.amount + EXCLUDED.amount;
    END IF;
    RETURN NULL;
END $$;

-- PostgreSQL allows transition tables only on triggers of one event: one trigger per event.
CREATE TRIGGER accounts_counted_in AFTER INSERT ON accounts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('accounts');
CREATE TRIGGER accounts_counted_out AFTER DELETE ON accounts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('accounts');
CREATE TRIGGER contacts_counted_in AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('contacts');
CREATE TRIGGER contacts_counted_out AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('contacts');
CREATE TRIGGER leads_counted_in AFTER INSERT ON leads
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('leads');
CREATE TRIGGER leads_counted_out AFTER DELETE ON leads
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('leads');
CREATE TRIGGER opportunities_counted_in AFTER INSERT ON opportunities
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('opportunities');
CREATE TRIGGER opportunities_counted_out AFTER DELETE ON opportunities
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('opportunities');
CREATE TRIGGER activities_counted_in AFTER INSERT ON activities
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('activities');
CREATE TRIGGER activities_counted_out AFTER DELETE ON activities
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_rows('activities');

-- Counts before stage totals (triggers of one event fire in name order: "opportunities_c…" <
-- "opportunities_s…"), so every session locks aggregate rows in the same order.
CREATE TRIGGER opportunities_staged_in AFTER INSERT ON opportunities
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION total_stages();
CREATE TRIGGER opportunities_staged_change AFTER UPDATE ON opportunities
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION total_stages();
CREATE TRIGGER opportunities_staged_out AFTER DELETE ON opportunities
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION total_stages();

-- Replaces the aggregates of tenant `of_tenant` (of every tenant when NULL) with the figures of its
-- rows, in slot 0. The caller keeps writers out meanwhile (`aishacrm aggregates rebuild` locks
-- the tables; the migration runs before the service starts).
CREATE FUNCTION rebuild_aggregates(of_tenant uuid) RETURNS void LANGUAGE sql AS $$
    DELETE FROM tenant_counts WHERE of_tenant IS NULL OR tenant_id = of_tenant;
    DELETE FROM stage_totals WHERE of_tenant IS NULL OR tenant_id = of_tenant;
    INSERT INTO tenant_counts (tenant_id, module, slot, count)
        SELECT tenant_id, 'accounts', 0, count(*) FROM accounts
            WHERE of_tenant IS NULL OR tenant_id = of_tenant GROUP BY tenant_id
        UNION ALL SELECT tenant_id, 'contacts', 0, count(*) FROM contacts
            WHERE of_tenant IS NULL OR tenant_id = of_tenant GROUP BY tenant_id
        UNION ALL SELECT tenant_id, 'leads', 0, count(*) FROM leads
            WHERE of_tenant IS NULL OR tenant_id = of_tenant GROUP BY tenant_id
        UNION ALL SELECT tenant_id, 'opportunities', 0, count(*) FROM opportunities
            WHERE of_tenant IS NULL OR tenant_id = of_tenant GROUP BY tenant_id
        UNION ALL SELECT tenant_id, 'activities', 0, count(*) FROM activities
            WHERE of_tenant IS NULL OR tenant_id = of_tenant GROUP BY tenant_id;
    INSERT INTO stage_totals (tenant_id, stage, slot, count, amount)
        SELECT tenant_id, stage, 0, count(*), sum(amount) FROM opportunities
            WHERE of_tenant IS NULL OR tenant_id = of_tenant GROUP BY tenant_id, stage;
$$;

-- The figures of the rows already there.
SELECT rebuild_aggregates(NULL);
