-- The five CRM entities. Every table is keyed by (tenant_id, id) so that every lookup is
-- tenant-scoped by construction, and references between entities are composite foreign keys
-- that can only point inside the same tenant. Enum and range rules of the API contract are
-- repeated here as CHECK constraints so that no writer can bypass them.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE accounts (
    id              uuid        NOT NULL,
    tenant_id       uuid        NOT NULL,
    name            text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    industry        text        CHECK (char_length(industry) <= 100),
    website         text        CHECK (char_length(website) <= 300),
    phone           text        CHECK (char_length(phone) <= 50),
    annual_revenue  numeric     CHECK (annual_revenue >= 0),
    employee_count  integer     CHECK (employee_count >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX accounts_page_idx ON accounts (tenant_id, created_at DESC, id DESC);
CREATE INDEX accounts_industry_idx ON accounts (tenant_id, industry, created_at DESC, id DESC);
CREATE INDEX accounts_name_trgm_idx ON accounts USING gin (name gin_trgm_ops);

CREATE TABLE contacts (
    id          uuid        NOT NULL,
    tenant_id   uuid        NOT NULL,
    first_name  text        CHECK (char_length(first_name) <= 100),
    last_name   text        NOT NULL CHECK (char_length(last_name) BETWEEN 1 AND 100),
    email       text        CHECK (char_length(email) <= 254 AND position('@' IN email) > 0),
    phone       text        CHECK (char_length(phone) <= 50),
    title       text        CHECK (char_length(title) <= 100),
    account_id  uuid,
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT contacts_account_fk FOREIGN KEY (tenant_id, account_id)
        REFERENCES accounts (tenant_id, id) ON DELETE SET NULL (account_id)
);
CREATE INDEX contacts_page_idx ON contacts (tenant_id, created_at DESC, id DESC);
CREATE INDEX contacts_account_idx ON contacts (tenant_id, account_id, created_at DESC, id DESC);
CREATE INDEX contacts_status_idx ON contacts (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX contacts_first_name_trgm_idx ON contacts USING gin (first_name gin_trgm_ops);
CREATE INDEX contacts_last_name_trgm_idx ON contacts USING gin (last_name gin_trgm_ops);
CREATE INDEX contacts_email_trgm_idx ON contacts USING gin (email gin_trgm_ops);

CREATE TABLE leads (
    id          uuid        NOT NULL,
    tenant_id   uuid        NOT NULL,
    first_name  text        CHECK (char_length(first_name) <= 100),
    last_name   text        NOT NULL CHECK (char_length(last_name) BETWEEN 1 AND 100),
    email       text        CHECK (char_length(email) <= 254 AND position('@' IN email) > 0),
    company     text        CHECK (char_length(company) <= 200),
    source      text        CHECK (char_length(source) <= 100),
    status      text        NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'contacted', 'qualified', 'unqualified', 'converted')),
    score       integer     NOT NULL DEFAULT 0 CHECK (score BETWEEN 0 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX leads_page_idx ON leads (tenant_id, created_at DESC, id DESC);
CREATE INDEX leads_status_idx ON leads (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX leads_source_idx ON leads (tenant_id, source, created_at DESC, id DESC);
CREATE INDEX leads_first_name_trgm_idx ON leads USING gin (first_name gin_trgm_ops);
CREATE INDEX leads_last_name_trgm_idx ON leads USING gin (last_name gin_trgm_ops);
CREATE INDEX leads_email_trgm_idx ON leads USING gin (email gin_trgm_ops);
CREATE INDEX leads_company_trgm_idx ON leads USING gin (company gin_trgm_ops);

CREATE TABLE opportunities (
    id          uuid          NOT NULL,
    tenant_id   uuid          NOT NULL,
    name        text          NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    account_id  uuid,
    contact_id  uuid,
    stage       text          NOT NULL DEFAULT 'prospecting'
                CHECK (stage IN ('prospecting', 'qualification', 'proposal', 'negotiation',
                                 'closed_won', 'closed_lost')),
    amount      numeric(14,2) NOT NULL DEFAULT 0 CHECK (amount >= 0),
    probability integer       NOT NULL DEFAULT 10 CHECK (probability BETWEEN 0 AND 100),
    close_date  date,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT opportunities_account_fk FOREIGN KEY (tenant_id, account_id)
        REFERENCES accounts (tenant_id, id) ON DELETE SET NULL (account_id),
    CONSTRAINT opportunities_contact_fk FOREIGN KEY (tenant_id, contact_id)
        REFERENCES contacts (tenant_id, id) ON DELETE SET NULL (contact_id)
);
CREATE INDEX opportunities_page_idx ON opportunities (tenant_id, created_at DESC, id DESC);
-- INCLUDE (amount) lets the per-stage stats run as an index-only scan.
CREATE INDEX opportunities_stage_idx
    ON opportunities (tenant_id, stage, created_at DESC, id DESC) INCLUDE (amount);
CREATE INDEX opportunities_account_idx
    ON opportunities (tenant_id, account_id, created_at DESC, id DESC) INCLUDE (stage, amount);
CREATE INDEX opportunities_contact_idx ON opportunities (tenant_id, contact_id);
CREATE INDEX opportunities_name_trgm_idx ON opportunities USING gin (name gin_trgm_ops);

CREATE TABLE activities (
    id            uuid        NOT NULL,
    tenant_id     uuid        NOT NULL,
    type          text        NOT NULL CHECK (type IN ('call', 'email', 'meeting', 'task', 'note')),
    subject       text        NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    body          text        CHECK (char_length(body) <= 10000),
    status        text        NOT NULL DEFAULT 'planned'
                  CHECK (status IN ('planned', 'completed', 'cancelled')),
    due_at        timestamptz,
    related_type  text        CHECK (related_type IN ('account', 'contact', 'lead', 'opportunity')),
    related_id    uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT activities_related_pair CHECK ((related_type IS NULL) = (related_id IS NULL))
);
CREATE INDEX activities_page_idx ON activities (tenant_id, created_at DESC, id DESC);
CREATE INDEX activities_type_idx ON activities (tenant_id, type, created_at DESC, id DESC);
CREATE INDEX activities_status_idx ON activities (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX activities_related_type_idx
    ON activities (tenant_id, related_type, created_at DESC, id DESC);
CREATE INDEX activities_related_id_idx
    ON activities (tenant_id, related_id, created_at DESC, id DESC);
CREATE INDEX activities_subject_trgm_idx ON activities USING gin (subject gin_trgm_ops);
