//! TUI tokens minted by reproq-django (spec §9.3, contract §7.2): HS256 only, signed
//! with the metrics auth token, for audience `reproq-tui` or `reproq-worker`, by a
//! superuser, not expired.
//!
//! Unlike the Go worker, a token must carry a numeric `exp` (reproq-django always sets
//! one): a token without it would be valid forever. `metrics.auth_allow_no_exp`
//! (`--metrics-auth-allow-no-exp`, `METRICS_AUTH_ALLOW_NO_EXP`) restores the Go rule.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Audiences a token may carry (one is enough).
pub const AUDIENCES: [&str; 2] = ["reproq-tui", "reproq-worker"];
/// The only issuer accepted when a token names one.
pub const ISSUER: &str = "reproq-django";

/// Whether `token` is a valid TUI JWT signed with `secret`; one without a numeric
/// `exp` only when `allow_no_exp`.
pub fn is_valid(token: &str, secret: &str, allow_no_exp: bool) -> bool {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_exp = true;
    if allow_no_exp {
        validation.set_required_spec_claims(&["aud"]);
    } else {
        validation.set_required_spec_claims(&["aud", "exp"]);
    }
    validation.set_audience(&AUDIENCES);
    // `decode` rejects every other `alg` (HS512, RS256, `none` …), padded base64 and a
    // bad signature (compared in constant time).
    let Ok(data) = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    ) else {
        return false;
    };
    let claims = data.claims;
    let issuer_ok = match claims.get("iss") {
        Some(Value::String(iss)) => iss == ISSUER,
        _ => true,
    };
    issuer_ok && claims.get("superuser") == Some(&Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn mint(alg: Algorithm, claims: Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn later() -> i64 {
        chrono::Utc::now().timestamp() + 3600
    }

    #[test]
    fn accepts_what_django_mints() {
        let claims = json!({"sub": "1", "superuser": true, "iss": "reproq-django", "aud": "reproq-tui", "exp": later()});
        assert!(is_valid(&mint(Algorithm::HS256, claims, "s3"), "s3", false));
        let array_aud = json!({"superuser": true, "aud": ["x", "reproq-worker"], "exp": later()});
        assert!(is_valid(
            &mint(Algorithm::HS256, array_aud, "s3"),
            "s3",
            false
        ));
    }

    #[test]
    fn exp_is_required_unless_allowed() {
        for claims in [
            json!({"superuser": true, "aud": "reproq-tui"}),
            json!({"superuser": true, "aud": "reproq-tui", "exp": "tomorrow"}),
        ] {
            let token = mint(Algorithm::HS256, claims.clone(), "s3");
            assert!(!is_valid(&token, "s3", false), "{claims}");
            assert!(is_valid(&token, "s3", true), "{claims}");
        }
        let expired = json!({"superuser": true, "aud": "reproq-tui", "exp": 1000});
        assert!(!is_valid(
            &mint(Algorithm::HS256, expired, "s3"),
            "s3",
            true
        ));
    }

    #[test]
    fn rejects_every_other_shape() {
        let good = json!({"superuser": true, "aud": "reproq-tui", "exp": later()});
        let cases = [
            (Algorithm::HS512, good.clone(), "s3"),
            (Algorithm::HS256, good.clone(), "other"),
            (
                Algorithm::HS256,
                json!({"superuser": true, "aud": "reproq-tui", "exp": 1000}),
                "s3",
            ),
            (
                Algorithm::HS256,
                json!({"superuser": true, "aud": "someone"}),
                "s3",
            ),
            (Algorithm::HS256, json!({"superuser": true}), "s3"),
            (
                Algorithm::HS256,
                json!({"superuser": "true", "aud": "reproq-tui"}),
                "s3",
            ),
            (
                Algorithm::HS256,
                json!({"superuser": true, "aud": "reproq-tui", "iss": "evil"}),
                "s3",
            ),
        ];
        for (alg, claims, secret) in cases {
            assert!(
                !is_valid(&mint(alg, claims.clone(), secret), "s3", true),
                "{alg:?} {claims}"
            );
        }
    }

    #[test]
    fn rejects_alg_none_and_padding() {
        // {"alg":"none","typ":"JWT"} . {"superuser":true,"aud":"reproq-tui"} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdXBlcnVzZXIiOnRydWUsImF1ZCI6InJlcHJvcS10dWkifQ.";
        assert!(!is_valid(none, "s3", true));
        let good = mint(
            Algorithm::HS256,
            json!({"superuser": true, "aud": "reproq-tui"}),
            "s3",
        );
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1].push('=');
        assert!(is_valid(&good, "s3", true));
        assert!(!is_valid(&parts.join("."), "s3", true));
    }
}
