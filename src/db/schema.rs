// @generated shape of `diesel print-schema` for the migrations in `migrations/`.

diesel::table! {
    accounts (tenant_id, id) {
        id -> Uuid,
        tenant_id -> Uuid,
        name -> Text,
        industry -> Nullable<Text>,
        website -> Nullable<Text>,
        phone -> Nullable<Text>,
        annual_revenue -> Nullable<Numeric>,
        employee_count -> Nullable<Int4>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    contacts (tenant_id, id) {
        id -> Uuid,
        tenant_id -> Uuid,
        first_name -> Nullable<Text>,
        last_name -> Text,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        title -> Nullable<Text>,
        account_id -> Nullable<Uuid>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    leads (tenant_id, id) {
        id -> Uuid,
        tenant_id -> Uuid,
        first_name -> Nullable<Text>,
        last_name -> Text,
        email -> Nullable<Text>,
        company -> Nullable<Text>,
        source -> Nullable<Text>,
        status -> Text,
        score -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    opportunities (tenant_id, id) {
        id -> Uuid,
        tenant_id -> Uuid,
        name -> Text,
        account_id -> Nullable<Uuid>,
        contact_id -> Nullable<Uuid>,
        stage -> Text,
        amount -> Numeric,
        probability -> Int4,
        close_date -> Nullable<Date>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    activities (tenant_id, id) {
        id -> Uuid,
        tenant_id -> Uuid,
        #[sql_name = "type"]
        type_ -> Text,
        subject -> Text,
        body -> Nullable<Text>,
        status -> Text,
        due_at -> Nullable<Timestamptz>,
        related_type -> Nullable<Text>,
        related_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(accounts, contacts, leads, opportunities, activities);

diesel::table! {
    cache_outbox (id) {
        id -> Int8,
        tenant_id -> Uuid,
        modules -> Array<Text>,
        committed_at -> Timestamptz,
        tags -> Array<Int8>,
    }
}

diesel::table! {
    tenant_counts (tenant_id, module, slot) {
        tenant_id -> Uuid,
        module -> Text,
        slot -> Int2,
        count -> Int8,
    }
}

diesel::table! {
    stage_totals (tenant_id, stage, slot) {
        tenant_id -> Uuid,
        stage -> Text,
        slot -> Int2,
        count -> Int8,
        amount -> Numeric,
    }
}
