//! `reproq migrate`: applies `migrations/*.sql` in order, one statement at a time in
//! autocommit (the files use `CREATE INDEX CONCURRENTLY`). Every statement is
//! idempotent, so there is no history table: re-running the whole set is the upgrade
//! path, and it is safe over tables that Django's migrations created.

use sqlx::PgPool;

/// The migration files, in lexical order, embedded at build time.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_baseline.sql",
        include_str!("../../migrations/0001_baseline.sql"),
    ),
    (
        "0002_claim_rank.sql",
        include_str!("../../migrations/0002_claim_rank.sql"),
    ),
    (
        "0003_wake_on_insert.sql",
        include_str!("../../migrations/0003_wake_on_insert.sql"),
    ),
];

/// What one `migrate` run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Files applied.
    pub files: usize,
    /// Statements executed.
    pub statements: usize,
    /// Invalid indexes (left by an interrupted concurrent build) dropped and rebuilt.
    pub rebuilt_indexes: Vec<String>,
}

/// A statement that failed.
#[derive(Debug, thiserror::Error)]
#[error("{file}: statement {index} failed: {source}\n{statement}")]
pub struct MigrateError {
    file: &'static str,
    index: usize,
    statement: String,
    source: sqlx::Error,
}

/// Applies every migration file.
///
/// # Errors
/// The first statement that fails, with its file and text.
pub async fn run(pool: &PgPool) -> Result<MigrateReport, MigrateError> {
    let mut report = MigrateReport {
        rebuilt_indexes: drop_invalid_indexes(pool).await?,
        ..Default::default()
    };
    for (file, text) in MIGRATIONS {
        for (index, statement) in split_statements(text).into_iter().enumerate() {
            sqlx::raw_sql(&statement)
                .execute(pool)
                .await
                .map_err(|source| MigrateError {
                    file,
                    index: index + 1,
                    statement: statement.clone(),
                    source,
                })?;
            report.statements += 1;
        }
        report.files += 1;
    }
    Ok(report)
}

/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` skips an invalid index left by an
/// interrupted build; drop ours first so the migration rebuilds them.
async fn drop_invalid_indexes(pool: &PgPool) -> Result<Vec<String>, MigrateError> {
    let wrap = |source| MigrateError {
        file: "(invalid index check)",
        index: 0,
        statement: String::new(),
        source,
    };
    let names: Vec<String> = sqlx::query_scalar(
        r#"select c.relname::text from pg_index i join pg_class c on c.oid = i.indexrelid
           where not i.indisvalid and c.relname like 'idx\_%' and c.relnamespace = current_schema()::regnamespace"#,
    )
    .fetch_all(pool)
    .await
    .map_err(wrap)?;
    for name in &names {
        let statement = format!(
            "drop index concurrently if exists \"{}\"",
            name.replace('"', "\"\"")
        );
        sqlx::raw_sql(&statement)
            .execute(pool)
            .await
            .map_err(wrap)?;
    }
    Ok(names)
}

/// Splits SQL text into statements on `;`, respecting quotes, dollar quotes and comments.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        let skip = match c {
            '-' if rest.starts_with("--") => rest.find('\n').map_or(rest.len(), |i| i + 1),
            '/' if rest.starts_with("/*") => rest.find("*/").map_or(rest.len(), |i| i + 2),
            '\'' | '"' => closing(rest, c).map_or(rest.len(), |i| i + 1),
            '$' => match dollar_tag(rest) {
                Some(tag) => rest[tag.len()..]
                    .find(tag)
                    .map_or(rest.len(), |i| i + 2 * tag.len()),
                None => 1,
            },
            ';' => {
                push_statement(&mut statements, &current);
                current.clear();
                rest = &rest[1..];
                continue;
            }
            _ => c.len_utf8(),
        };
        if !(c == '-' && rest.starts_with("--")) {
            current.push_str(&rest[..skip]);
        }
        rest = &rest[skip..];
    }
    push_statement(&mut statements, &current);
    statements
}

fn push_statement(statements: &mut Vec<String>, text: &str) {
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        statements.push(trimmed.to_owned());
    }
}

/// Index of the quote closing the one at the start of `text` (doubled quotes escape).
fn closing(text: &str, quote: char) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == quote as u8 {
            if bytes.get(i + 1) == Some(&(quote as u8)) {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

/// `$tag$` or `$$` at the start of `text`.
fn dollar_tag(text: &str) -> Option<&str> {
    let end = text[1..].find('$')? + 1;
    let tag = &text[..=end];
    tag[1..end]
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_')
        .then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_quotes_and_bodies() {
        let sql = "-- a comment; with semicolon\ncreate table a (x text default ';');\n\
                   create function f() returns int language sql as $$ select 1; $$;\n\
                   do $body$ begin perform 1; end $body$;\n/* block; */ select 'it''s;'";
        let statements = split_statements(sql);
        assert_eq!(statements.len(), 4, "{statements:#?}");
        assert_eq!(statements[0], "create table a (x text default ';')");
        assert!(statements[1].ends_with("$$ select 1; $$"));
        assert!(statements[2].starts_with("do $body$"));
        assert_eq!(statements[3], "/* block; */ select 'it''s;'");
    }

    #[test]
    fn embedded_list_matches_the_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn every_migration_file_splits_into_statements() {
        for (name, text) in MIGRATIONS {
            let statements = split_statements(text);
            assert!(!statements.is_empty(), "{name}");
            assert!(
                statements.iter().all(|s| !s.starts_with("--")),
                "{name}: comment kept as a statement"
            );
        }
    }
}
