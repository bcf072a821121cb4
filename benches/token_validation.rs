//! What validating one Entra access token costs, next to the RSA signature check that no
//! validator can avoid. Machines here are shared and noisy, so every figure is reported as a
//! ratio to that baseline, measured in the same run, interleaved round by round.
//!
//! Run: `cargo bench --bench token_validation` (add `-- --iterations N` for more samples).

use jitgate::auth::{KeySet, KeySource, TokenValidator, VerifyingKey};
use jitgate::store::{DynStore, RoleAssignmentPut};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TENANT: &str = "7c1e2b3a-0000-4000-8000-00000000a11e";
const ISSUER: &str = "https://login.example/7c1e2b3a-0000-4000-8000-00000000a11e/v2.0";
const AUDIENCE: &str = "api://jitgate-bench";
const KID: &str = "idp-key-1";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let iterations: usize = std::env::args()
        .skip_while(|a| a != "--iterations")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let public: Value = serde_json::from_slice(&fixture("idp-keys.json")).unwrap();
    let decoding = || {
        DecodingKey::from_rsa_components(
            public[KID]["n"].as_str().unwrap(),
            public[KID]["e"].as_str().unwrap(),
        )
        .unwrap()
    };
    let keys = KeySet::new(vec![VerifyingKey {
        kid: KID.into(),
        algorithm: Algorithm::RS256,
        key: decoding(),
    }]);
    let validator = TokenValidator::new(
        KeySource::Static(Arc::new(keys)),
        vec![ISSUER.into()],
        vec![AUDIENCE.into()],
        TENANT.into(),
    );

    let now = chrono::Utc::now().timestamp();
    let oid = "0a11ce00-0000-4000-8000-000000000001";
    let groups: Vec<String> = (0..20)
        .map(|i| format!("6a6a6a6a-0000-4000-8000-{i:012}"))
        .collect();
    let claims = json!({
        "aud": AUDIENCE, "iss": ISSUER, "tid": TENANT, "ver": "2.0", "iat": now, "nbf": now, "exp": now + 3600,
        "oid": oid, "sub": "pairwise", "scp": "access_as_user", "preferred_username": "alice@contoso.com",
        "roles": ["Jit.Requester"], "groups": groups,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&fixture("idp-key-1.pem")).unwrap(),
    )
    .unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    let raw_key = decoding();
    let mut library_validation = Validation::new(Algorithm::RS256);
    library_validation.set_audience(&[AUDIENCE]);
    library_validation.set_issuer(&[ISSUER]);

    // The per-request path in full: validation, then the caller's stored role assignments
    // (the caller's object id and 20 groups) from a SQLite store holding 1000 assignments.
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = runtime.block_on(async {
        let url = jitgate::config::DatabaseUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        ))
        .unwrap();
        let store = jitgate::store::connect(&url).await.unwrap();
        for i in 0..1000 {
            let principal = if i % 100 == 0 {
                groups[i / 100].clone()
            } else {
                format!("someone-{i}")
            };
            let draft = serde_json::from_value(json!({
                "principalId": principal, "principalType": "Group", "role": "Jit.Approver",
                "scope": format!("/subscriptions/00000000-0000-0000-0000-{i:012}"),
            }))
            .unwrap();
            let assignment =
                jitgate::rbac::RoleAssignment::parse(&format!("a{i:04}"), draft).unwrap();
            store
                .put_role_assignment(RoleAssignmentPut {
                    assignment,
                    by: jitgate::domain::Principal {
                        id: "bench".into(),
                        name: "bench".into(),
                    },
                    now: chrono::Utc::now(),
                })
                .await
                .unwrap();
        }
        store
    });

    assert!(
        runtime.block_on(validator.validate(&token)).is_ok(),
        "the bench token must validate"
    );
    let mut baseline = Vec::with_capacity(iterations);
    let mut library = Vec::with_capacity(iterations);
    let mut ours = Vec::with_capacity(iterations);
    let mut with_roles = Vec::with_capacity(iterations);
    let mut principals = vec![oid.to_string()];
    principals.extend(groups.iter().cloned());
    for _ in 0..100 {
        black_box(runtime.block_on(validator.validate(&token)).unwrap());
    }
    for _ in 0..iterations {
        let t = Instant::now();
        black_box(
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &raw_key, Algorithm::RS256)
                .unwrap(),
        );
        baseline.push(t.elapsed());

        let t = Instant::now();
        black_box(jsonwebtoken::decode::<Value>(&token, &raw_key, &library_validation).unwrap());
        library.push(t.elapsed());

        let t = Instant::now();
        black_box(runtime.block_on(validator.validate(&token)).unwrap());
        ours.push(t.elapsed());

        let t = Instant::now();
        runtime.block_on(async {
            let caller = validator.validate(&token).await.unwrap();
            let found = store.role_assignments_for(&principals).await.unwrap();
            black_box((caller, found));
        });
        with_roles.push(t.elapsed());
    }
    let base = median(&mut baseline);
    let report = |name: &str, samples: &mut Vec<Duration>| {
        let m = median(samples);
        println!(
            "{name:<58} median {:>9.1} µs   {:>5.2}x baseline",
            m.as_secs_f64() * 1e6,
            m.as_secs_f64() / base.as_secs_f64()
        );
    };
    println!("token validation, {iterations} interleaved rounds (RS256, 2048-bit key, 20 groups)");
    report(
        "baseline: RS256 signature check alone",
        &mut baseline.clone(),
    );
    report("jsonwebtoken::decode with exp/aud/iss checks", &mut library);
    report("jitgate TokenValidator::validate (one token)", &mut ours);
    report(
        "validate + stored role assignments (SQLite, 1000 rows)",
        &mut with_roles,
    );
}
