//! `reproq limit set|ls|rm` against a real database.

use crate::support::{TestDb, Variant, reproq, stderr, stdout};

#[tokio::test]
async fn set_ls_rm_round_trip() {
    let db = TestDb::new(Variant::Django).await;
    let dsn = db.url.as_str();
    let set = reproq(
        &[
            "limit",
            "set",
            "--key",
            "queue:default",
            "--rate",
            "5",
            "--burst",
            "10",
            "--dsn",
            dsn,
        ],
        &[],
        None,
    );
    assert!(set.status.success(), "{set:?}");
    assert_eq!(
        stdout(&set),
        "Set rate limit queue:default: 5.00 tokens/sec, burst 10\n"
    );

    let row: (f64, i32, f64) = sqlx::query_as(
        "select tokens_per_second::float8, burst_size, current_tokens::float8 from rate_limits where key = 'queue:default'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row, (5.0, 10, 10.0), "the bucket starts full");

    // Go-style single-dash flags, from the environment's DATABASE_URL.
    let ls = reproq(
        &["limit", "ls"],
        &[("DATABASE_URL", dsn), ("TZ", "UTC")],
        None,
    );
    assert!(ls.status.success(), "{ls:?}");
    let text = stdout(&ls);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Key\tTokens/s\tBurst\tCurrent\tLastRefill");
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].starts_with("global\t0.00\t1\t0.00\t"), "{text}");
    assert!(
        lines[2].starts_with("queue:default\t5.00\t10\t10.00\t"),
        "{text}"
    );

    let json = reproq(&["limit", "ls", "-json", "-dsn", dsn], &[], None);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows[1]["key"], "queue:default");

    let rm = reproq(
        &["limit", "rm", "-key", "queue:default", "-dsn", dsn],
        &[],
        None,
    );
    assert_eq!(stdout(&rm), "Deleted 1 rate limit(s) for queue:default\n");
    let rm = reproq(&["limit", "rm", "--key=global", "--dsn", dsn], &[], None);
    assert_eq!(stdout(&rm), "Deleted 1 rate limit(s) for global\n");
    let ls = reproq(&["limit", "ls", "--dsn", dsn], &[], None);
    assert_eq!(stdout(&ls), "No rate limits configured.\n");
}

#[tokio::test]
async fn bad_input_exits_2_and_names_the_problem() {
    let db = TestDb::new(Variant::Sql).await;
    let dsn = db.url.as_str();
    let cases: &[(&[&str], &str)] = &[
        (
            &["limit", "set", "--key", "k", "--rate", "-1", "--dsn", dsn],
            "--rate",
        ),
        (
            &["limit", "set", "--key", "k", "--burst", "0", "--dsn", dsn],
            "--burst",
        ),
        (
            &["limit", "set", "--rate", "1", "--dsn", dsn],
            "--key is required",
        ),
        (&["limit", "rm", "--dsn", dsn], "--key is required"),
        (
            &["limit", "set", "--key", "k", "--dsn", "mysql://nope"],
            "invalid DSN",
        ),
        (&["limit", "ls"], "DSN required"),
    ];
    for (args, needle) in cases {
        let output = reproq(args, &[], None);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let count: i64 = sqlx::query_scalar("select count(*) from rate_limits")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1, "nothing was written");
}

#[test]
fn unreachable_database_is_a_runtime_failure() {
    let output = reproq(
        &["limit", "ls", "--dsn", "postgres://nobody@127.0.0.1:1/none"],
        &[],
        None,
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("failed to connect"),
        "{}",
        stderr(&output)
    );
}
