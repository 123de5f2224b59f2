-- The transactional outbox of cache invalidations. A write's own transaction inserts the row of
-- what it must invalidate, so a row exists exactly when its write committed. The row is deleted
-- once Redis has acknowledged both the increment of the generations and the publish on the bus;
-- until then any instance relays it, so a committed write's invalidation survives its writer.
CREATE TABLE cache_outbox (
    id           bigserial   PRIMARY KEY,
    tenant_id    uuid        NOT NULL,
    modules      text[]      NOT NULL,
    -- The writer's clock just before COMMIT: the start of the invalidation lag it measures.
    committed_at timestamptz NOT NULL
);
