CREATE INDEX accounts_name_trgm_idx ON accounts USING gin (name gin_trgm_ops);
CREATE INDEX contacts_first_name_trgm_idx ON contacts USING gin (first_name gin_trgm_ops);
CREATE INDEX contacts_last_name_trgm_idx ON contacts USING gin (last_name gin_trgm_ops);
CREATE INDEX contacts_email_trgm_idx ON contacts USING gin (email gin_trgm_ops);
CREATE INDEX leads_first_name_trgm_idx ON leads USING gin (first_name gin_trgm_ops);
CREATE INDEX leads_last_name_trgm_idx ON leads USING gin (last_name gin_trgm_ops);
CREATE INDEX leads_email_trgm_idx ON leads USING gin (email gin_trgm_ops);
CREATE INDEX leads_company_trgm_idx ON leads USING gin (company gin_trgm_ops);
CREATE INDEX opportunities_name_trgm_idx ON opportunities USING gin (name gin_trgm_ops);
CREATE INDEX activities_subject_trgm_idx ON activities USING gin (subject gin_trgm_ops);

DROP INDEX accounts_tenant_name_trgm_idx;
DROP INDEX contacts_tenant_first_name_trgm_idx;
DROP INDEX contacts_tenant_last_name_trgm_idx;
DROP INDEX contacts_tenant_email_trgm_idx;
DROP INDEX leads_tenant_first_name_trgm_idx;
DROP INDEX leads_tenant_last_name_trgm_idx;
DROP INDEX leads_tenant_email_trgm_idx;
DROP INDEX leads_tenant_company_trgm_idx;
DROP INDEX opportunities_tenant_name_trgm_idx;
DROP INDEX activities_tenant_subject_trgm_idx;
-- btree_gin stays: another schema object may use it by now.
