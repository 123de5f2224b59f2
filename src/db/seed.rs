//! `aishacrm seed`: realistic demo data, written in multi-row batches.

use std::time::Instant;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::{stream, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::accounts::AccountRow;
use super::activities::ActivityRow;
use super::contacts::ContactRow;
use super::leads::LeadRow;
use super::opportunities::OpportunityRow;
use super::schema::{accounts, activities, contacts, leads, opportunities};
use super::BoxError;
use crate::config::Config;
use crate::domain::entities::{
    ACTIVITY_STATUSES, ACTIVITY_TYPES, ALL, CONTACT_STATUSES, LEAD_STATUSES, STAGES,
};
use crate::domain::tags::Tag;
use crate::domain::TenantId;

/// Rows per INSERT: PostgreSQL takes at most 65,535 bind parameters per statement.
const BATCH: usize = 4_000;

const COMPANY_PARTS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Aperture",
    "Massive",
    "Gringotts",
    "Oscorp",
    "Pied Piper",
    "Dunder",
    "Monarch",
    "Sterling",
    "Blue Sun",
    "Nakatomi",
    "Prestige",
    "Zenith",
    "Northwind",
];
const COMPANY_SUFFIXES: &[&str] = &[
    "Inc", "Ltd", "GmbH", "Labs", "Group", "Systems", "Partners", "Co",
];
const INDUSTRIES: &[&str] = &[
    "software",
    "manufacturing",
    "retail",
    "healthcare",
    "finance",
    "education",
    "logistics",
    "energy",
    "media",
    "hospitality",
];
const FIRST_NAMES: &[&str] = &[
    "Aisha", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Sofia", "Yuki", "Amara", "Lucas", "Mia",
    "Omar", "Chen", "Priya", "Jonas", "Elena", "Kwame", "Ines", "Ravi", "Hana",
];
const LAST_NAMES: &[&str] = &[
    "Khan", "Smith", "Garcia", "Müller", "Rossi", "Tanaka", "Okafor", "Silva", "Novak", "Dubois",
    "Kowalski", "Nguyen", "Jensen", "Haddad", "Costa", "Ivanova", "Park", "Mensah", "Larsen",
    "Patel",
];
const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "VP Sales",
    "Buyer",
    "Engineer",
    "Office Manager",
    "CFO",
];
const SOURCES: &[&str] = &["web", "referral", "event", "cold call", "partner", "ads"];
const DEALS: &[&str] = &[
    "Renewal",
    "Expansion",
    "Pilot",
    "Platform deal",
    "Support plan",
    "Migration",
];
const SUBJECTS: &[&str] = &[
    "Intro call",
    "Send proposal",
    "Follow up",
    "Quarterly review",
    "Demo",
    "Contract questions",
];

struct Generator {
    rng: StdRng,
    tenant: Uuid,
    now: DateTime<Utc>,
}

impl Generator {
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items.choose(&mut self.rng).copied().unwrap_or_default()
    }

    fn maybe<T>(&mut self, percent: u32, value: impl FnOnce(&mut Self) -> T) -> Option<T> {
        (self.rng.gen_range(0..100) < percent).then(|| value(self))
    }

    /// A creation time in the last two years, and an update time after it.
    fn stamps(&mut self) -> (DateTime<Utc>, DateTime<Utc>) {
        let created =
            self.now - Duration::microseconds(self.rng.gen_range(0..730 * 86_400_000_000));
        let age = (self.now - created).num_microseconds().unwrap_or(0).max(1);
        (
            created,
            created + Duration::microseconds(self.rng.gen_range(0..age)),
        )
    }

    fn company(&mut self) -> String {
        format!(
            "{} {}",
            self.pick(COMPANY_PARTS),
            self.pick(COMPANY_SUFFIXES)
        )
    }

    fn email(&mut self, first: &str, last: &str) -> String {
        let n: u32 = self.rng.gen_range(1..1000);
        format!(
            "{}.{}{n}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        )
    }

    fn account(&mut self) -> AccountRow {
        let (created_at, updated_at) = self.stamps();
        let name = self.company();
        AccountRow {
            id: Uuid::new_v4(),
            tenant_id: self.tenant,
            website: Some(format!(
                "https://{}.example.com",
                name.to_lowercase().replace(' ', "-")
            )),
            name,
            industry: Some(self.pick(INDUSTRIES).to_owned()),
            phone: self.maybe(70, |g| format!("+1-555-{:04}", g.rng.gen_range(0..10_000))),
            annual_revenue: self.maybe(80, |g| {
                BigDecimal::from(g.rng.gen_range(10_000..500_000_000i64))
            }),
            employee_count: self.maybe(80, |g| g.rng.gen_range(1..20_000)),
            created_at,
            updated_at,
        }
    }

    fn contact(&mut self, accounts: &[Uuid]) -> ContactRow {
        let (created_at, updated_at) = self.stamps();
        let first = self.pick(FIRST_NAMES);
        let last = self.pick(LAST_NAMES);
        ContactRow {
            id: Uuid::new_v4(),
            tenant_id: self.tenant,
            first_name: Some(first.to_owned()),
            last_name: last.to_owned(),
            email: Some(self.email(first, last)),
            phone: self.maybe(60, |g| format!("+1-555-{:04}", g.rng.gen_range(0..10_000))),
            title: Some(self.pick(TITLES).to_owned()),
            account_id: self
                .maybe(85, |g| accounts.choose(&mut g.rng).copied())
                .flatten(),
            status: Some(self.pick(CONTACT_STATUSES)),
            created_at,
            updated_at,
        }
    }

    fn lead(&mut self) -> LeadRow {
        let (created_at, updated_at) = self.stamps();
        let first = self.pick(FIRST_NAMES);
        let last = self.pick(LAST_NAMES);
        LeadRow {
            id: Uuid::new_v4(),
            tenant_id: self.tenant,
            first_name: Some(first.to_owned()),
            last_name: last.to_owned(),
            email: Some(self.email(first, last)),
            company: Some(self.company()),
            source: Some(self.pick(SOURCES).to_owned()),
            status: Some(self.pick(LEAD_STATUSES)),
            score: Some(self.rng.gen_range(0..=100)),
            created_at,
            updated_at,
        }
    }

    fn opportunity(&mut self, accounts: &[Uuid], contacts: &[Uuid]) -> OpportunityRow {
        let (created_at, updated_at) = self.stamps();
        let close = created_at.date_naive() + Duration::days(self.rng.gen_range(14..240));
        let cents: i64 = self.rng.gen_range(50_000..50_000_000);
        OpportunityRow {
            id: Uuid::new_v4(),
            tenant_id: self.tenant,
            name: format!("{} {}", self.pick(COMPANY_PARTS), self.pick(DEALS)),
            account_id: self
                .maybe(90, |g| accounts.choose(&mut g.rng).copied())
                .flatten(),
            contact_id: self
                .maybe(70, |g| contacts.choose(&mut g.rng).copied())
                .flatten(),
            stage: Some(self.pick(STAGES)),
            amount: Some(BigDecimal::new(cents.into(), 2)),
            probability: Some(self.rng.gen_range(0..=100)),
            close_date: Some(close).filter(|date| *date > NaiveDate::MIN),
            created_at,
            updated_at,
        }
    }

    fn activity(&mut self, related: &[(&'static str, &[Uuid])]) -> ActivityRow {
        let (created_at, updated_at) = self.stamps();
        let target = self
            .maybe(70, |g| {
                let (kind, ids) = related.choose(&mut g.rng)?;
                Some((*kind, *ids.choose(&mut g.rng)?))
            })
            .flatten();
        ActivityRow {
            id: Uuid::new_v4(),
            tenant_id: self.tenant,
            type_: self.pick(ACTIVITY_TYPES),
            subject: self.pick(SUBJECTS).to_owned(),
            body: self.maybe(50, |_| "Notes from the conversation.".to_owned()),
            status: Some(self.pick(ACTIVITY_STATUSES)),
            due_at: self.maybe(60, |g| created_at + Duration::days(g.rng.gen_range(1..30))),
            related_type: target.map(|(kind, _)| kind),
            related_id: target.map(|(_, id)| id),
            created_at,
            updated_at,
        }
    }
}

macro_rules! insert_batches {
    ($conn:expr, $table:path, $rows:expr, $progress:expr) => {
        for chunk in $rows.chunks(BATCH) {
            diesel::insert_into($table)
                .values(chunk)
                .execute($conn)
                .await?;
            $progress.inc(chunk.len() as u64);
        }
    };
}

/// Rows `seed_tenant` writes for `per_tenant`.
pub fn rows_per_tenant(per_tenant: usize) -> u64 {
    (per_tenant + 4 * (per_tenant / 5)) as u64
}

/// Fills one tenant: `per_tenant` opportunities and a fifth of that of every other entity.
pub async fn seed_tenant(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    per_tenant: usize,
    progress: &ProgressBar,
) -> Result<(), BoxError> {
    let mut generator = Generator {
        rng: StdRng::from_entropy(),
        tenant,
        now: super::now(),
    };
    let fifth = per_tenant / 5;
    let accounts: Vec<AccountRow> = (0..fifth).map(|_| generator.account()).collect();
    insert_batches!(conn, accounts::table, accounts, progress);
    let account_ids: Vec<Uuid> = accounts.iter().map(|row| row.id).collect();

    let contacts: Vec<ContactRow> = (0..fifth)
        .map(|_| generator.contact(&account_ids))
        .collect();
    insert_batches!(conn, contacts::table, contacts, progress);
    let contact_ids: Vec<Uuid> = contacts.iter().map(|row| row.id).collect();

    let leads: Vec<LeadRow> = (0..fifth).map(|_| generator.lead()).collect();
    insert_batches!(conn, leads::table, leads, progress);
    let lead_ids: Vec<Uuid> = leads.iter().map(|row| row.id).collect();

    let mut opportunity_ids = Vec::with_capacity(per_tenant);
    for start in (0..per_tenant).step_by(BATCH) {
        let batch: Vec<OpportunityRow> = (start..(start + BATCH).min(per_tenant))
            .map(|_| generator.opportunity(&account_ids, &contact_ids))
            .collect();
        opportunity_ids.extend(batch.iter().map(|row| row.id));
        insert_batches!(conn, opportunities::table, batch, progress);
    }

    let related: [(&'static str, &[Uuid]); 4] = [
        ("account", &account_ids),
        ("contact", &contact_ids),
        ("lead", &lead_ids),
        ("opportunity", &opportunity_ids),
    ];
    let activities: Vec<ActivityRow> = (0..fifth).map(|_| generator.activity(&related)).collect();
    insert_batches!(conn, activities::table, activities, progress);
    Ok(())
}

/// Refreshes planner statistics and the visibility map (for index-only counts) after a bulk load.
pub async fn analyze(conn: &mut AsyncPgConnection) -> Result<(), BoxError> {
    conn.batch_execute("VACUUM (ANALYZE) accounts, contacts, leads, opportunities, activities")
        .await?;
    Ok(())
}

/// What `aishacrm seed` fills.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How many new tenants to fill.
    pub tenants: usize,
    /// Opportunities per tenant; the other entities get a fifth of this.
    pub per_tenant: usize,
    /// Fill this one tenant instead of new ones.
    pub tenant: Option<Uuid>,
}

/// `aishacrm seed`: fills the plan's tenants, two at a time.
pub async fn run(config: &Config, args: &Plan) -> Result<(), BoxError> {
    let tenants: Vec<Uuid> = match args.tenant {
        Some(tenant) => vec![tenant],
        None => (0..args.tenants).map(|_| Uuid::new_v4()).collect(),
    };
    let total = rows_per_tenant(args.per_tenant) * tenants.len() as u64;
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({per_sec}, eta {eta})",
        )?,
    );
    let pool = super::build_pool(config)?;
    // A live service may have the tenants' answers cached: the outbox tells every instance,
    // through Redis, once the rows are in (or once the seed of a tenant failed part way).
    let tell_instances = config.uses_redis();
    let started = Instant::now();
    stream::iter(tenants.iter().copied().map(Ok::<_, BoxError>))
        .try_for_each_concurrent(2, |tenant| {
            let pool = pool.clone();
            let progress = progress.clone();
            let per_tenant = args.per_tenant;
            async move {
                let mut conn = pool.get().await?;
                let seeded = seed_tenant(&mut conn, tenant, per_tenant, &progress).await;
                if tell_instances {
                    let tags: Vec<Tag> = ALL.iter().map(|spec| Tag::module(spec.module)).collect();
                    super::outbox::record(&conn, TenantId(tenant), &tags).await?;
                }
                seeded
            }
        })
        .await?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    log::info!(
        "seeded {total} rows for {} tenant(s) in {seconds:.1} s ({:.0} rows/s); analyzing",
        tenants.len(),
        total as f64 / seconds.max(0.001)
    );
    let mut conn = pool.get().await?;
    analyze(&mut conn).await?;
    for tenant in &tenants {
        println!("{tenant}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_rows_are_valid() {
        let mut generator = Generator {
            rng: StdRng::seed_from_u64(7),
            tenant: Uuid::new_v4(),
            now: Utc::now(),
        };
        for _ in 0..200 {
            let opportunity = generator.opportunity(&[], &[]);
            assert!(STAGES.contains(&opportunity.stage.unwrap_or_default()));
            assert!(opportunity.created_at <= opportunity.updated_at);
            assert!(opportunity.account_id.is_none());
        }
    }
}
