//! The Django user's path: `reproq migrate --check`, the start-up warning (and
//! `worker --validate`) about what `reproq migrate` would add, and the pool runner's
//! advice about `CONN_MAX_AGE = 0`.

use serde_json::json;

use crate::support::{
    DJANGO_SCHEMA, TestDb, Variant, insert, reproq, row, stdout, task, worker_args,
};

/// A database as reproq-django builds it and our migrate adds to it, then stripped of
/// what only `reproq migrate` adds (the state after `manage.py reproq migrate-worker`).
async fn without_our_additions() -> TestDb {
    let db = TestDb::new(Variant::Django).await;
    sqlx::raw_sql(
        "drop index idx_task_runs_claim_rank; \
         drop trigger trg_task_runs_wake_on_insert on task_runs; \
         drop trigger trg_task_runs_wake_on_ready on task_runs; \
         drop table reproq_queue_waiters",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    db
}

#[tokio::test]
async fn migrate_check_lists_what_is_missing_and_changes_nothing() {
    // The bare tables of Django's own migration.
    let db = TestDb::empty().await;
    sqlx::raw_sql(DJANGO_SCHEMA)
        .execute(&db.pool)
        .await
        .unwrap();
    let check = reproq(&["migrate", "--check", "--dsn", &db.url], &[], None);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let text = stdout(&check);
    assert!(text.contains("idx_task_runs_claim_rank"), "{text}");
    assert!(text.contains("trg_task_runs_wake_on_insert"), "{text}");
    assert!(text.contains("reproq migrate --dsn"), "{text}");
    let created: Option<String> =
        sqlx::query_scalar("select to_regclass('reproq_queue_waiters')::text")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(created, None, "--check changed the schema");

    let migrate = reproq(&["migrate", "--dsn", &db.url], &[], None);
    assert!(migrate.status.success(), "{migrate:?}");
    let check = reproq(&["migrate", "--check", "--dsn", &db.url], &[], None);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert!(stdout(&check).contains("up to date"), "{check:?}");
}

fn worker_log(db: &TestDb, extra: &[&str]) -> String {
    let mut args = vec!["worker", "--burst"];
    args.extend(worker_args(db, extra));
    let output = reproq(&args, &[], None);
    assert!(output.status.success(), "{output:?}");
    stdout(&output)
}

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test]
async fn the_worker_warns_once_at_start_up_about_a_schema_without_our_additions() {
    let db = without_our_additions().await;
    let id = insert(&db.pool, task("tasks.ok", json!({}))).await;
    let log = worker_log(&db, &[]);
    assert_eq!(row(&db.pool, id).await.status, "SUCCESSFUL");
    let warnings = lines_with(&log, "Schema lacks what `reproq migrate` adds");
    assert_eq!(warnings.len(), 1, "{log}");
    let warning: serde_json::Value = serde_json::from_str(warnings[0]).unwrap();
    assert_eq!(warning["level"], "WARN", "{warning}");
    let missing = warning["missing"].as_str().unwrap();
    assert!(missing.contains("idx_task_runs_claim_rank"), "{warning}");
    assert!(
        missing.contains("trg_task_runs_wake_on_insert"),
        "{warning}"
    );
    assert!(
        warning["cost"]
            .as_str()
            .unwrap()
            .contains("sorts the whole READY backlog"),
        "{warning}"
    );
    assert!(
        warning["fix"]
            .as_str()
            .unwrap()
            .starts_with("reproq migrate --dsn"),
        "{warning}"
    );

    let mut validate = vec!["worker", "--validate"];
    validate.extend(worker_args(&db, &[]));
    let output = reproq(&validate, &[], None);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.contains("warning: schema lacks the claim-rank index"),
        "{text}"
    );
    assert!(
        text.contains("warning: schema lacks the wake-on-insert triggers"),
        "{text}"
    );
    assert!(text.contains("reproq migrate --dsn"), "{text}");

    // After `reproq migrate` on the live database: no warning.
    reproq::db::migrate::run(&db.pool).await.unwrap();
    let log = worker_log(&db, &[]);
    assert!(lines_with(&log, "Schema lacks").is_empty(), "{log}");
    let text = stdout(&reproq(&validate, &[], None));
    assert!(!text.contains("schema lacks"), "{text}");
}

#[tokio::test]
async fn pool_mode_relays_the_conn_max_age_advice_once() {
    let db = TestDb::new(Variant::Sql).await;
    let databases = json!({"default": {"ENGINE": "x"}, "replica": {"CONN_MAX_AGE": 600}});
    for _ in 0..3 {
        insert(
            &db.pool,
            task("tasks.django_settings", json!({"databases": databases})),
        )
        .await;
    }
    // Two runners, so each sends the advice; the worker logs it once.
    let log = worker_log(
        &db,
        &[
            "--executor-mode",
            "pool",
            "--concurrency",
            "2",
            "--pool-max-tasks",
            "1",
        ],
    );
    let advice = lines_with(&log, "django_conn_max_age_zero");
    assert_eq!(advice.len(), 1, "{log}");
    let line: serde_json::Value = serde_json::from_str(advice[0]).unwrap();
    assert_eq!(line["level"], "WARN", "{line}");
    let message = line["msg"].as_str().unwrap();
    assert!(message.contains("'default'"), "{message}");
    assert!(!message.contains("'replica'"), "{message}");
    assert!(message.contains("CONN_MAX_AGE"), "{message}");

    let db = TestDb::new(Variant::Sql).await;
    let databases = json!({"default": {"CONN_MAX_AGE": 600}});
    insert(
        &db.pool,
        task("tasks.django_settings", json!({"databases": databases})),
    )
    .await;
    let log = worker_log(&db, &["--executor-mode", "pool"]);
    assert!(
        lines_with(&log, "django_conn_max_age_zero").is_empty(),
        "{log}"
    );
}
