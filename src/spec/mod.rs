//! Task specs as reproq-django builds them (contract §3): the canonical JSON encoder and
//! the version-1 spec object, so `reproq enqueue` produces the same `spec_hash` Django does.

pub mod canonical;
pub mod depth;
pub mod v1;
