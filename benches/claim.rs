//! Claim latency on a large backlog, index-backed order vs the reference's expression.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo bench --bench claim
//! CLAIM_BACKLOG=1000000 cargo bench --bench claim     # default 100,000 READY rows
//! ```
//!
//! Each iteration claims one task and puts it back to READY, so the backlog stays the
//! same size. Skips (and says so) without DATABASE_URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use reproq::queue::{ClaimOrder, ClaimRequest, Claimer};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

fn claim_benches(c: &mut Criterion) {
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        eprintln!("claim bench skipped: set DATABASE_URL");
        return;
    };
    let backlog: i64 = std::env::var("CLAIM_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: PgConnectOptions = admin_url.parse().unwrap();
    let name = format!("reproq_claim_bench_{}", std::process::id());
    let pool: PgPool = rt.block_on(async {
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("create database {name}")).execute(&mut conn).await.unwrap();
        // As the worker connects (the same session settings).
        let pool = PgPool::connect_with(admin.clone().database(&name).options(reproq::db::Plans::Generic.session_settings())).await.unwrap();
        reproq::db::migrate::run(&pool).await.unwrap();
        sqlx::query(
            r#"insert into task_runs (spec_json, spec_hash, task_path, priority, enqueued_at)
               select jsonb_build_object('task_path', 'tasks.ok', 'args', jsonb_build_array(i)), md5(i::text), 'tasks.ok',
                      i % 10, now() - make_interval(secs => (i % 86400))
               from generate_series(1, $1) i"#,
        )
        .bind(backlog)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("vacuum analyze task_runs").execute(&pool).await.unwrap();
        pool
    });
    let mut group = c.benchmark_group(format!("claim_one_of_{backlog}"));
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    for (label, order) in [
        ("index_backed_aging", ClaimOrder::Ranked { factor: 60.0 }),
        ("reference_aging", ClaimOrder::Aging { factor: 60.0 }),
    ] {
        let claimer = Claimer::new(order);
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                let request = ClaimRequest { queue: "default", worker_id: "bench", lease: Duration::from_secs(60), limit: 1 };
                let claimed = claimer.claim(&pool, &request).await.unwrap();
                sqlx::query("update task_runs set status = 'READY', attempts = 0, leased_by = null where result_id = $1")
                    .bind(claimed[0].id)
                    .execute(&pool)
                    .await
                    .unwrap();
            });
        });
    }
    group.finish();
    rt.block_on(async {
        pool.close().await;
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("drop database {name} with (force)"))
            .execute(&mut conn)
            .await
            .unwrap();
    });
}

criterion_group!(benches, claim_benches);
criterion_main!(benches);
