//! `reproq migrate` on both schema variants.

use crate::support::{BOTH, TestDb, Variant, reproq, stdout};

async fn schema_snapshot(db: &TestDb) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        r#"select format('%s %s', tablename, indexname) from pg_indexes where schemaname = 'public'
           union all
           select format('%s.%s %s %s default=%s', table_name, column_name, data_type, is_nullable, coalesce(column_default, '-'))
           from information_schema.columns where table_schema = 'public'
           union all
           select format('trigger %s', tgname) from pg_trigger where not tgisinternal
           union all
           select format('fn %s', proname) from pg_proc where proname like 'reproq%'
           union all
           select format('rate %s %s %s', key, tokens_per_second, burst_size) from rate_limits
           order by 1"#,
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrate_builds_every_table_index_and_trigger() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        let snapshot = schema_snapshot(&db).await.join("\n");
        for table in [
            "task_runs",
            "periodic_tasks",
            "reproq_queue_controls",
            "reproq_workers",
            "rate_limits",
            "workflow_runs",
        ] {
            assert!(
                snapshot.contains(&format!("{table}.")),
                "{variant:?}: table {table} missing"
            );
        }
        for index in [
            "idx_task_runs_claim ",
            "idx_task_runs_spec_unique",
            "idx_task_runs_lock_key",
            "idx_task_runs_concurrency_active",
            "idx_task_runs_parent_id",
            "idx_task_runs_workflow_id",
            "idx_task_runs_failed_at",
            "idx_task_runs_task_path",
            "idx_task_runs_claim_due",
            "idx_task_runs_claim_rank",
            "idx_periodic_tasks_next_run",
            "idx_workflow_runs_callback",
        ] {
            assert!(
                snapshot.contains(index.trim_end()),
                "{variant:?}: index {index} missing"
            );
        }
        assert!(
            snapshot.contains("trigger trg_task_runs_task_path"),
            "{variant:?}"
        );
        assert!(snapshot.contains("fn reproq_claim_rank"), "{variant:?}");
        assert!(snapshot.contains("rate global 0 1"), "{variant:?}");
    }
}

#[tokio::test]
async fn second_migrate_changes_nothing_and_keeps_the_global_limit() {
    for variant in BOTH {
        let db = TestDb::new(variant).await;
        sqlx::query(
            "update rate_limits set tokens_per_second = 7, burst_size = 9 where key = 'global'",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let before = schema_snapshot(&db).await;
        reproq::db::migrate::run(&db.pool).await.unwrap();
        assert_eq!(before, schema_snapshot(&db).await, "{variant:?}");
        assert!(
            before.iter().any(|l| l == "rate global 7 9"),
            "{variant:?}: the global row was reset"
        );
    }
}

#[tokio::test]
async fn django_variant_keeps_its_own_column_types_and_lacks_defaults() {
    let db = TestDb::new(Variant::Django).await;
    let (hash_type, status_default): (String, Option<String>) = sqlx::query_as(
        r#"select (select data_type from information_schema.columns where table_name = 'task_runs' and column_name = 'spec_hash'),
                  (select column_default from information_schema.columns where table_name = 'task_runs' and column_name = 'status')"#,
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(hash_type, "character varying");
    assert_eq!(status_default, None);
}

#[tokio::test]
async fn migrate_rebuilds_an_invalid_index() {
    let db = TestDb::new(Variant::Sql).await;
    sqlx::query("update pg_index set indisvalid = false where indexrelid = 'idx_task_runs_lock_key'::regclass")
        .execute(&db.pool)
        .await
        .unwrap();
    let report = reproq::db::migrate::run(&db.pool).await.unwrap();
    assert_eq!(report.rebuilt_indexes, ["idx_task_runs_lock_key"]);
    let valid: bool = sqlx::query_scalar(
        "select indisvalid from pg_index where indexrelid = 'idx_task_runs_lock_key'::regclass",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(valid);
}

#[tokio::test]
async fn migrate_command_is_idempotent_from_the_cli() {
    let db = TestDb::empty().await;
    for _ in 0..2 {
        let output = reproq(&["migrate", "--dsn", &db.url], &[], None);
        assert!(output.status.success(), "{output:?}");
        assert!(stdout(&output).contains("schema is up to date"));
    }
}

#[test]
fn migration_files_apply_with_plain_sql_in_order() {
    // Benchmarks build databases with `psql -f` per file; the files must not depend on
    // anything our Rust code does between them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = TestDb::empty().await;
        for (_, text) in reproq::db::migrate::MIGRATIONS {
            for statement in reproq::db::migrate::split_statements(text) {
                sqlx::raw_sql(&statement).execute(&db.pool).await.unwrap();
            }
        }
        let count: i64 =
            sqlx::query_scalar("select count(*) from pg_indexes where indexname like 'idx_%'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(count, 12);
    });
}
