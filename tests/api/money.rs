//! Money is exact end to end: the decimal stored is the decimal answered, in records, in `stats`
//! and in the bundle, also for sums a binary float cannot hold to the cent.

use std::str::FromStr;

use aishacrm::domain::entities::STAGES;
use bigdecimal::BigDecimal;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::spawn_app;

fn decimal(value: &Value) -> BigDecimal {
    let number = value
        .as_number()
        .unwrap_or_else(|| panic!("an amount that is not a JSON number: {value}"));
    BigDecimal::from_str(&number.to_string()).expect("a decimal")
}

/// Random amounts (near the largest allowed, so that sums pass 2^53 cents, where a float loses
/// them) in random stages: every sum the service answers equals the decimal sum of the amounts.
#[tokio::test]
async fn stats_the_bundle_and_the_records_keep_every_cent() {
    let app = spawn_app().await;
    let seed: u64 = rand::random();
    eprintln!("money property test seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..3 {
        let token = app.token(Uuid::new_v4());
        let mut expected = vec![BigDecimal::from(0); STAGES.len()];
        let records = rng.gen_range(120..200);
        for _ in 0..records {
            let cents: u64 = if rng.gen_bool(0.9) {
                rng.gen_range(50_000_000_000_000..=99_999_999_999_999)
            } else {
                rng.gen_range(0..1_000)
            };
            let text = format!("{}.{:02}", cents / 100, cents % 100);
            let stage = rng.gen_range(0..STAGES.len());
            let amount = serde_json::Number::from_str(&text).expect("a JSON number");
            let created = app
                .create(
                    "opportunities",
                    &token,
                    json!({"name": "Deal", "stage": STAGES[stage], "amount": amount}),
                )
                .await;
            assert_eq!(
                decimal(&created["amount"]),
                BigDecimal::from_str(&text).expect("a decimal"),
                "the amount answered is the amount sent: {text}"
            );
            expected[stage] += BigDecimal::from_str(&text).expect("a decimal");
        }
        let total: BigDecimal = expected.iter().sum();
        eprintln!("round {round}: {records} records, total {total}");

        let (_, stats) = app.get_json("/api/v2/opportunities/stats", &token).await;
        let (_, bundle) = app.get_json("/api/v2/dashboard/bundle", &token).await;
        for (what, stages) in [
            ("stats", &stats["stages"]),
            ("bundle", &bundle["opportunity_stages"]),
        ] {
            for (at, stage) in STAGES.iter().enumerate() {
                assert_eq!(stages[at]["stage"], *stage);
                assert_eq!(
                    decimal(&stages[at]["amount"]),
                    expected[at],
                    "{what}: the {stage} sum (seed {seed})"
                );
            }
        }
        assert_eq!(
            decimal(&stats["total"]["amount"]),
            total,
            "the stats total (seed {seed})"
        );

        // The listed records add up to the same total.
        let mut listed = BigDecimal::from(0);
        let mut path = "/api/v2/opportunities?limit=200".to_owned();
        loop {
            let (status, page) = app.get_json(&path, &token).await;
            assert_eq!(status, 200);
            for record in page["data"].as_array().expect("a page") {
                listed += decimal(&record["amount"]);
            }
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v2/opportunities?limit=200&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(listed, total, "the listed records' sum (seed {seed})");
    }
}
