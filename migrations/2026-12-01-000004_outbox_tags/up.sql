-- A write's outbox row names the cache tags it changed (see src/domain/tags.rs), so that the
-- relay invalidates exactly what the writer would have. A row without tags (written by a version
-- before tags) invalidates its modules as a whole. Adding a column with a constant default
-- rewrites nothing and holds its lock only for the catalogue change.
ALTER TABLE cache_outbox ADD COLUMN tags bigint[] NOT NULL DEFAULT '{}';
