//! Task specs as reproq-django builds them (contract §3): the canonical JSON encoder and
//! the version-1 spec object, so `reproq enqueue` produces the same `spec_hash` Django does;
//! and the rules every reader of user JSON shares: the nesting limit (`depth`) and NUL
//! replacement before PostgreSQL stores it (`pg_text`). Depends on nothing of ours.

pub mod canonical;
pub mod depth;
pub mod pg_text;
pub mod v1;
