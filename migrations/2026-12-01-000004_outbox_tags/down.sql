ALTER TABLE cache_outbox DROP COLUMN tags;
