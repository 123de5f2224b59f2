DROP TABLE cache_outbox;
