//! The order in which READY rows are claimed, and which index serves it.
//!
//! With priority aging on (factor > 0) the reference orders by
//! `priority + age / factor`, which needs `NOW()` and so sorts the whole backlog on
//! every claim (spec §13.14). For a fixed factor, `priority * factor - epoch(enqueued_at)`
//! orders the same rows the same way (except that the reference clamps a future
//! `enqueued_at` to age 0), and `migrations/0002_claim_rank.sql` indexes it for the
//! default factor 60. The worker detects that index at start-up and uses it when the
//! factors match; otherwise it falls back to the reference's expression.

use sqlx::PgExecutor;

/// The name of our expression index.
pub const RANK_INDEX: &str = "idx_task_runs_claim_rank";

/// How candidates are ordered.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOrder {
    /// `reproq_claim_rank(...) desc`, served by [`RANK_INDEX`] (index-backed).
    Ranked {
        /// The aging factor baked into the index.
        factor: f64,
    },
    /// The reference's `priority + age/factor` expression (sorts the backlog).
    Aging {
        /// Seconds of waiting worth one priority point.
        factor: f64,
    },
    /// Plain `priority desc, enqueued_at asc` (aging disabled), served by `idx_task_runs_claim`.
    Priority,
}

impl ClaimOrder {
    /// The `ORDER BY` body for rows aliased `t`.
    pub fn order_by(&self) -> String {
        match self {
            ClaimOrder::Ranked { factor } => {
                format!(
                    "reproq_claim_rank(t.priority, t.enqueued_at, {}::float8) desc, t.enqueued_at asc",
                    float_literal(*factor)
                )
            }
            ClaimOrder::Aging { factor } => format!(
                "(t.priority + greatest(date_part('epoch', now() - t.enqueued_at), 0) / {}::float8) desc, t.enqueued_at asc",
                float_literal(*factor)
            ),
            ClaimOrder::Priority => "t.priority desc, t.enqueued_at asc".into(),
        }
    }

    /// A line for the start-up log saying which order is in use and why.
    pub fn describe(&self) -> String {
        match self {
            ClaimOrder::Ranked { factor } => {
                format!("index-backed priority aging (factor {factor}, {RANK_INDEX})")
            }
            ClaimOrder::Aging { factor } => format!(
                "priority aging by expression (factor {factor}); no matching {RANK_INDEX}, so every claim sorts the READY backlog (run `reproq migrate` to add the index; it serves the default factor 60)"
            ),
            ClaimOrder::Priority => {
                "plain priority order (aging disabled), idx_task_runs_claim".into()
            }
        }
    }
}

/// Picks the claim order for `factor` from what the database offers.
///
/// # Errors
/// Database errors while inspecting the catalogue.
pub async fn detect(db: impl PgExecutor<'_>, factor: f64) -> Result<ClaimOrder, sqlx::Error> {
    if factor <= 0.0 {
        return Ok(ClaimOrder::Priority);
    }
    let definition: Option<String> = sqlx::query_scalar(
        r#"select pg_get_indexdef(i.indexrelid) from pg_index i
           join pg_class c on c.oid = i.indexrelid
           where c.relname = $1::text and i.indisvalid and c.relnamespace = current_schema()::regnamespace"#,
    )
    .bind(RANK_INDEX)
    .fetch_optional(db)
    .await?;
    Ok(match definition.as_deref().and_then(indexed_factor) {
        Some(indexed) if (indexed - factor).abs() < 1e-9 => ClaimOrder::Ranked { factor },
        _ => ClaimOrder::Aging { factor },
    })
}

/// The factor in an index definition such as
/// `... reproq_claim_rank(priority, enqueued_at, 60::double precision) DESC ...`.
pub fn indexed_factor(definition: &str) -> Option<f64> {
    let start = definition.find("reproq_claim_rank(priority, enqueued_at, ")?
        + "reproq_claim_rank(priority, enqueued_at, ".len();
    let rest = &definition[start..];
    let literal: String = rest
        .trim_start_matches(['(', '\''])
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    literal.parse().ok()
}

fn float_literal(value: f64) -> String {
    // `{:?}` always includes a decimal point or exponent and round-trips exactly.
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_factor_from_index_definitions() {
        let def = "CREATE INDEX idx_task_runs_claim_rank ON public.task_runs USING btree (queue_name, reproq_claim_rank(priority, enqueued_at, 60::double precision) DESC, enqueued_at) WHERE (status = 'READY'::text)";
        assert_eq!(indexed_factor(def), Some(60.0));
        assert_eq!(
            indexed_factor(
                "... reproq_claim_rank(priority, enqueued_at, '45.5'::double precision) ..."
            ),
            Some(45.5)
        );
        assert_eq!(
            indexed_factor(
                "... reproq_claim_rank(priority, enqueued_at, (30)::double precision) ..."
            ),
            Some(30.0)
        );
        assert_eq!(indexed_factor("CREATE INDEX other ON t (a)"), None);
    }

    #[test]
    fn order_clauses() {
        assert!(
            ClaimOrder::Ranked { factor: 60.0 }
                .order_by()
                .starts_with("reproq_claim_rank(t.priority, t.enqueued_at, 60.0::float8) desc")
        );
        assert!(
            ClaimOrder::Aging { factor: 60.0 }
                .order_by()
                .contains("/ 60.0::float8")
        );
        assert_eq!(
            ClaimOrder::Priority.order_by(),
            "t.priority desc, t.enqueued_at asc"
        );
    }
}
