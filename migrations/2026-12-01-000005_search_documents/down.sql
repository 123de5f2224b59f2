CREATE INDEX contacts_tenant_first_name_trgm_idx ON contacts USING gin (tenant_id, first_name gin_trgm_ops);
CREATE INDEX contacts_tenant_last_name_trgm_idx ON contacts USING gin (tenant_id, last_name gin_trgm_ops);
CREATE INDEX contacts_tenant_email_trgm_idx ON contacts USING gin (tenant_id, email gin_trgm_ops);
CREATE INDEX leads_tenant_first_name_trgm_idx ON leads USING gin (tenant_id, first_name gin_trgm_ops);
CREATE INDEX leads_tenant_last_name_trgm_idx ON leads USING gin (tenant_id, last_name gin_trgm_ops);
CREATE INDEX leads_tenant_email_trgm_idx ON leads USING gin (tenant_id, email gin_trgm_ops);
CREATE INDEX leads_tenant_company_trgm_idx ON leads USING gin (tenant_id, company gin_trgm_ops);

DROP INDEX contacts_tenant_search_trgm_idx;
DROP INDEX leads_tenant_search_trgm_idx;
