-- A `q` search of leads (four fields) or contacts (three) read one trigram index per field and
-- OR-ed the bitmaps; each of them starts from every row of the tenant (the tenant_id part of
-- the index), so a count of `q=hooli` over a tenant of 10,000 leads took 13 ms. One index over
-- the fields joined finds the candidates in one scan (1.4 ms); the query keeps the OR of the
-- fields to decide exactly (src/db/leads.rs, src/db/contacts.rs: SEARCH_DOCUMENT must stay the
-- expression indexed here). One index instead of four also makes each insert cheaper.
CREATE INDEX leads_tenant_search_trgm_idx ON leads USING gin (
    tenant_id,
    (coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, '')
        || ' ' || coalesce(company, '')) gin_trgm_ops
);
CREATE INDEX contacts_tenant_search_trgm_idx ON contacts USING gin (
    tenant_id,
    (coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, ''))
        gin_trgm_ops
);

DROP INDEX leads_tenant_first_name_trgm_idx;
DROP INDEX leads_tenant_last_name_trgm_idx;
DROP INDEX leads_tenant_email_trgm_idx;
DROP INDEX leads_tenant_company_trgm_idx;
DROP INDEX contacts_tenant_first_name_trgm_idx;
DROP INDEX contacts_tenant_last_name_trgm_idx;
DROP INDEX contacts_tenant_email_trgm_idx;
