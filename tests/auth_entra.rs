//! Entra ID mode against a local OIDC provider: which tokens are accepted, which are refused
//! and why, key rotation, and roles from the token, from stored assignments and from groups.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::idp::{TestIdp, CLIENT_ID, KEY_1, KEY_2, OTHER_TENANT, TENANT};
use common::{problem, TestApp, SUB};
use jitgate::rbac::Role;
use reqwest::{Method, Response};
use serde_json::{json, Value};

const ALICE: &str = "0a11ce00-0000-4000-8000-000000000001";
const GROUP: &str = "6a6a6a6a-0000-4000-8000-0000000000f1";

async fn me(app: &TestApp, token: &str) -> Response {
    app.request(Method::GET, "/v1/me", token)
        .send()
        .await
        .unwrap()
}

/// Asserts a 401 with the RFC 6750 challenge naming `reason`, and that nothing of the token
/// comes back.
async fn assert_refused(app: &TestApp, token: &str, reason: &str, case: &str) {
    let response = me(app, token).await;
    assert_eq!(response.status(), 401, "{case}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{case}: {challenge}"
    );
    assert!(challenge.contains(reason), "{case}: {challenge}");
    let body = problem(response, 401).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(reason), "{case}: {detail}");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(
            !body.to_string().contains(part) && !challenge.contains(part),
            "{case}: the token is echoed"
        );
    }
}

#[tokio::test]
async fn valid_v1_and_v2_tokens_are_accepted() {
    let idp = TestIdp::start().await;
    let app = TestApp::spawn_entra(&idp).await;

    let v2 = idp.token(&idp.user_claims(ALICE, "alice@contoso.com", &["Jit.Auditor"]));
    let body: Value = me(&app, &v2).await.json().await.unwrap();
    assert_eq!(body["id"], ALICE);
    assert_eq!(body["name"], "alice@contoso.com");
    assert_eq!(body["kind"], "User");
    assert_eq!(
        body["roles"],
        json!([{ "role": "Jit.Auditor", "scope": "/", "source": "token" }])
    );

    // A v1 token: the sts.windows.net issuer, the client id as audience, the name in `upn`.
    let v1 = idp.token(&idp.v1_user_claims(ALICE, "alice@contoso.com", &["Jit.Requester"]));
    let body: Value = me(&app, &v1).await.json().await.unwrap();
    assert_eq!(body["name"], "alice@contoso.com");
    assert_eq!(body["roles"][0]["role"], "Jit.Requester");

    // Both configured audiences are accepted, whichever token version carries them.
    let mut claims = idp.user_claims(ALICE, "alice@contoso.com", &[]);
    claims["aud"] = json!(CLIENT_ID);
    assert_eq!(me(&app, &idp.token(&claims)).await.status(), 200);

    // Within the leeway (default one minute), a just-expired token still passes.
    let mut claims = idp.user_claims(ALICE, "alice@contoso.com", &[]);
    claims["exp"] = json!(chrono::Utc::now().timestamp() - 20);
    assert_eq!(me(&app, &idp.token(&claims)).await.status(), 200);
}

#[tokio::test]
async fn app_only_tokens_are_service_principals() {
    let idp = TestIdp::start().await;
    let app = TestApp::spawn_entra(&idp).await;
    const BOT: &str = "b0700000-0000-4000-8000-0000000000b0";
    let body: Value = me(&app, &idp.token(&idp.app_claims(BOT, &["Jit.Bot"])))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["kind"], "ServicePrincipal");
    assert_eq!(body["roles"][0]["role"], "Jit.Bot");

    // Without `idtyp` (it is an optional claim): no delegated scopes and oid == sub.
    let mut claims = idp.app_claims(BOT, &["Jit.Bot"]);
    claims.as_object_mut().unwrap().remove("idtyp");
    let body: Value = me(&app, &idp.token(&claims)).await.json().await.unwrap();
    assert_eq!(body["kind"], "ServicePrincipal");

    // A user token is never taken for an app, whatever its roles.
    let body: Value = me(
        &app,
        &idp.token(&idp.user_claims(ALICE, "alice@contoso.com", &["Jit.Bot"])),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["kind"], "User");
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused_with_the_reason() {
    let idp = TestIdp::start().await;
    let app = TestApp::spawn_entra(&idp).await;
    let good = || idp.user_claims(ALICE, "alice@contoso.com", &["Jit.Admin"]);
    let with = |field: &str, value: Value| {
        let mut c = good();
        c[field] = value;
        idp.token(&c)
    };
    let now = chrono::Utc::now().timestamp();

    // alg: none, naming our key.
    let header =
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": KEY_1 }).to_string());
    let none = format!("{header}.{}.", URL_SAFE_NO_PAD.encode(good().to_string()));
    assert_refused(&app, &none, "not a well-formed JWT", "alg none").await;

    // HS256 keyed with our public key: the classic algorithm-confusion forgery.
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(KEY_1.into());
    let forged = jsonwebtoken::encode(
        &hs,
        &good(),
        &jsonwebtoken::EncodingKey::from_secret(&idp.public_pem(KEY_1)),
    )
    .unwrap();
    assert_refused(
        &app,
        &forged,
        "algorithm is not the one its key is pinned to",
        "HS256 with the public key",
    )
    .await;

    assert_refused(&app, &with("exp", json!(now - 3600)), "expired", "expired").await;
    assert_refused(
        &app,
        &with("nbf", json!(now + 3600)),
        "not valid yet",
        "not yet valid",
    )
    .await;
    assert_refused(
        &app,
        &with("aud", json!("api://someone-else")),
        "another audience",
        "wrong audience",
    )
    .await;
    assert_refused(
        &app,
        &with("iss", json!("https://evil.example/v2.0")),
        "another issuer",
        "wrong issuer",
    )
    .await;
    // Another tenant's token: its issuer names that tenant ...
    let mut foreign = good();
    foreign["iss"] = json!(format!("{}/{OTHER_TENANT}/v2.0", idp.authority));
    foreign["tid"] = json!(OTHER_TENANT);
    assert_refused(&app, &idp.token(&foreign), "another issuer", "other tenant").await;
    // ... and a token whose issuer is ours but whose tid is not is refused too.
    assert_refused(
        &app,
        &with("tid", json!(OTHER_TENANT)),
        "another tenant",
        "other tid",
    )
    .await;
    // A key the IdP does not publish.
    assert_refused(
        &app,
        &idp.sign(KEY_2, &good()),
        "signing key is not known",
        "unknown kid",
    )
    .await;

    // A valid token with its payload changed (roles added) after signing.
    let token = idp.token(&idp.user_claims(ALICE, "alice@contoso.com", &[]));
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(good().to_string()),
        parts[2]
    );
    assert_refused(&app, &tampered, "signature is invalid", "tampered payload").await;

    // A missing header altogether.
    let response = app.client.get(app.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_unknown_kids_cannot_hammer_the_idp() {
    let idp = TestIdp::start().await;
    let app = TestApp::spawn_entra(&idp).await;
    assert_eq!(
        idp.jwks_fetches(),
        1,
        "discovery at start-up fetches the keys once"
    );
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["signingKeys"]["source"], "entra");
    assert_eq!(ready["signingKeys"]["keys"], 1);

    // Entra rolls over to a new key; the first token signed with it arrives.
    idp.publish(&[KEY_1, KEY_2]);
    let claims = idp.user_claims(ALICE, "alice@contoso.com", &["Jit.Auditor"]);
    assert_eq!(me(&app, &idp.sign(KEY_2, &claims)).await.status(), 200);
    assert_eq!(idp.jwks_fetches(), 2, "exactly one refetch for the new kid");
    assert_eq!(me(&app, &idp.sign(KEY_2, &claims)).await.status(), 200);
    assert_eq!(me(&app, &idp.sign(KEY_1, &claims)).await.status(), 200);
    assert_eq!(idp.jwks_fetches(), 2, "known kids need no fetch");

    // A flood of invented kids, concurrently: refused, and no more fetches.
    let forged: Vec<String> = (0..50)
        .map(|i| {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            h.kid = Some(format!("invented-{i}"));
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(
                &std::fs::read(format!(
                    "{}/tests/fixtures/{KEY_1}.pem",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap(),
            )
            .unwrap();
            jsonwebtoken::encode(&h, &claims, &key).unwrap()
        })
        .collect();
    let mut flood = tokio::task::JoinSet::new();
    for token in forged {
        let request = app.client.get(app.url("/v1/me")).bearer_auth(token);
        flood.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = flood.join_next().await {
        assert_eq!(status.unwrap(), 401);
    }
    assert_eq!(idp.jwks_fetches(), 2, "unknown kids are rate limited");
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["signingKeys"]["keys"], 2);
    assert_eq!(ready["signingKeys"]["fetches"], 2);
}

#[tokio::test]
async fn start_up_fails_clearly_when_discovery_fails() {
    let idp = TestIdp::start().await;
    let mut settings = idp.settings();
    // Nothing listens here.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    settings.entra_authority = Some(format!("http://{}", closed.local_addr().unwrap()));
    drop(closed);
    settings.data_dir = Some(std::env::temp_dir());
    let config = settings.resolve().unwrap();
    let Err(err) = jitgate::server::token_validator(&config).await else {
        panic!("start-up must fail when discovery fails");
    };
    let text = format!("{err:#}");
    assert!(
        text.contains("Entra ID sign-in keys are unavailable") && text.contains("OIDC discovery"),
        "{text}"
    );
}

#[tokio::test]
async fn a_token_without_roles_is_authenticated_but_may_do_nothing() {
    let idp = TestIdp::start().await;
    let app = TestApp::spawn_entra(&idp).await;
    let mut claims = idp.user_claims(ALICE, "alice@contoso.com", &[]);
    claims.as_object_mut().unwrap().remove("roles");
    let token = idp.token(&claims);
    let body: Value = me(&app, &token).await.json().await.unwrap();
    assert_eq!(body["roles"], json!([]));
    let refused = problem(app.put_policy(&token, "vm1", json!({})).await, 403).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("Jit.Admin"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_role_assigned_to_a_group_holds_for_its_members_at_its_scope() {
    let idp = TestIdp::start().await;
    let app = TestApp::spawn_entra(&idp).await;
    let root = idp.token(&idp.app_claims("a0000000-0000-4000-8000-0000000000ad", &["Jit.Admin"]));
    let rg_scope = format!("/subscriptions/{SUB}/resourceGroups/rg-web");
    assert_eq!(
        app.assign(
            &root,
            "web-admins",
            (GROUP, "Group"),
            Role::Admin,
            &rg_scope
        )
        .await
        .status(),
        201
    );

    let mut claims = idp.user_claims(ALICE, "alice@contoso.com", &[]);
    claims["groups"] = json!(["11111111-0000-4000-8000-000000000000", GROUP]);
    let member = idp.token(&claims);
    assert_eq!(
        app.put_policy(&member, "vm1", json!({})).await.status(),
        201
    );
    assert_eq!(
        app.put_policy(&member, "rg-db/vm1", json!({}))
            .await
            .status(),
        403
    );
    let body: Value = me(&app, &member).await.json().await.unwrap();
    assert_eq!(
        body["roles"],
        json!([{ "role": "Jit.Admin", "scope": rg_scope, "source": "assignment", "assignmentId": "web-admins" }])
    );

    // Not a member: nothing.
    let outsider = idp.token(&idp.user_claims(
        "0b0b0000-0000-4000-8000-000000000002",
        "bob@contoso.com",
        &[],
    ));
    assert_eq!(
        app.put_policy(&outsider, "vm2", json!({})).await.status(),
        403
    );

    // The assignment goes: so does the role, at once.
    let gone = app
        .request(Method::DELETE, "/v1/role-assignments/web-admins", &root)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(
        app.put_policy(&member, "vm3", json!({})).await.status(),
        403
    );
}

#[tokio::test]
async fn the_groups_overage_claim_is_explained_not_silently_dropped() {
    let idp = TestIdp::start().await;
    let app = TestApp::spawn_entra(&idp).await;
    let root = idp.token(&idp.app_claims("a0000000-0000-4000-8000-0000000000ad", &["Jit.Admin"]));
    let scope = format!("/subscriptions/{SUB}");
    assert_eq!(
        app.assign(&root, "ops", (GROUP, "Group"), Role::Admin, &scope)
            .await
            .status(),
        201
    );

    // In too many groups: Entra sends a pointer to Graph instead of the groups.
    let mut claims = idp.user_claims(ALICE, "alice@contoso.com", &[]);
    claims["_claim_names"] = json!({ "groups": "src1" });
    claims["_claim_sources"] = json!({ "src1": { "endpoint": format!("https://graph.windows.net/{TENANT}/users/{ALICE}/getMemberObjects") } });
    let token = idp.token(&claims);
    let body: Value = me(&app, &token).await.json().await.unwrap();
    assert_eq!(body["groupsOverage"], true);
    let refused = problem(app.put_policy(&token, "vm1", json!({})).await, 403).await;
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.contains("groups overage") && detail.contains("assign the role to you directly"),
        "{detail}"
    );

    // Assigned directly, the same user gets in.
    assert_eq!(
        app.assign(&root, "alice-admin", (ALICE, "User"), Role::Admin, &scope)
            .await
            .status(),
        201
    );
    assert_eq!(app.put_policy(&token, "vm1", json!({})).await.status(), 201);
}

#[tokio::test]
async fn assignments_match_the_principal_kind() {
    let idp = TestIdp::start().await;
    let app = TestApp::spawn_entra(&idp).await;
    let root = idp.token(&idp.app_claims("a0000000-0000-4000-8000-0000000000ad", &["Jit.Admin"]));
    const SP: &str = "5e000000-0000-4000-8000-0000000000aa";
    let scope = format!("/subscriptions/{SUB}");
    // Given in upper case, as some portals show object ids; matched all the same.
    let response = app
        .assign(
            &root,
            "sp-admin",
            (&SP.to_uppercase(), "ServicePrincipal"),
            Role::Admin,
            &scope,
        )
        .await;
    assert_eq!(response.status(), 201);
    let app_token = idp.token(&idp.app_claims(SP, &[]));
    assert_eq!(
        app.put_policy(&app_token, "vm1", json!({})).await.status(),
        201
    );
    // A user token that happens to carry the same object id is not that service principal.
    let user_token = idp.token(&idp.user_claims(SP, "mallory@contoso.com", &[]));
    assert_eq!(
        app.put_policy(&user_token, "vm2", json!({})).await.status(),
        403
    );
}
