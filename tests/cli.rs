//! The `jitgate` binary as a newcomer meets it: no configuration, dev auth, SQLite in the
//! working directory, a token from `jitgate token`, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

/// A command with none of the developer's JITGATE_* settings, so it sees the defaults.
fn jitgate(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("JITGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Starts `serve` on an ephemeral port and returns it with the address its banner names.
fn start_serve(dir: &std::path::Path) -> (Child, String) {
    let (child, addr, banner) = start_serve_with(dir, &[]);
    assert!(banner.contains("ARM is the built-in simulator"), "{banner}");
    (child, addr)
}

/// Starts `serve` with these extra settings; returns it, its address and its banner.
fn start_serve_with(dir: &std::path::Path, envs: &[(&str, &str)]) -> (Child, String, String) {
    let mut child = jitgate(dir)
        .arg("serve")
        .env("JITGATE_LISTEN", "127.0.0.1:0")
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.split("http://").nth(1) {
                if let Some(addr) = rest.strip_suffix("/v1/me") {
                    let _ = tx.send((banner.clone(), addr.to_string()));
                }
            }
        }
    });
    let (banner, addr) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve printed its banner");
    assert!(banner.contains("DEV AUTH"), "{banner}");
    assert!(
        banner.contains("token --user alice --role Jit.Admin"),
        "{banner}"
    );
    (child, addr, banner)
}

/// A token from `jitgate token`, as the banner tells a newcomer to get one.
fn admin_token(dir: &std::path::Path) -> String {
    let out = jitgate(dir)
        .args(["token", "--user", "alice", "--role", "Jit.Admin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "jitgate did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serve_runs_with_no_configuration_and_a_minted_token_works() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_serve(dir.path());
    let token = admin_token(dir.path());

    let client = reqwest::Client::new();
    let policy =
        format!("http://{addr}/v1/subscriptions/s1/resourceGroups/rg/virtualMachines/vm1/policy");
    let created = client
        .put(&policy)
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(
        dir.path().join("jitgate.db").exists(),
        "SQLite file in the working directory"
    );
    assert!(
        dir.path().join("jitgate-dev-key.pem").exists(),
        "dev key in the data directory"
    );

    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_serve(dir.path());
    let token = admin_token(dir.path());

    // Send the headers and half the body, stop the server, then send the rest.
    let body = br#"{"ports": [{"number": 22}]}"#;
    let head = format!(
        "PUT /v1/subscriptions/s1/resourceGroups/rg/virtualMachines/vm1/policy HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(&body[10..]).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
}

#[test]
fn a_bad_setting_stops_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, named) in [
        (
            "JITGATE_DATABASE_URL",
            "mysql://db/jit",
            "invalid JITGATE_DATABASE_URL",
        ),
        ("JITGATE_AUTH_MODE", "ldap", "invalid JITGATE_AUTH_MODE"),
        (
            "JITGATE_ARM_ENDPOINT",
            "management dot azure",
            "invalid JITGATE_ARM_ENDPOINT",
        ),
    ] {
        let out = jitgate(dir.path())
            .arg("serve")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with(&format!("error: {named}")), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn migrate_creates_the_schema_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = jitgate(dir.path())
        .arg("migrate")
        .env("JITGATE_DATABASE_URL", "sqlite://fresh.db")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("fresh.db").exists());
}

#[test]
fn openapi_prints_the_checked_in_document() {
    let dir = tempfile::tempdir().unwrap();
    let out = jitgate(dir.path()).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let checked_in =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap();
    assert!(
        out.stdout == checked_in,
        "openapi/openapi.json differs from `jitgate openapi`"
    );
}

#[test]
fn token_refuses_an_unknown_role() {
    let dir = tempfile::tempdir().unwrap();
    let out = jitgate(dir.path())
        .args(["token", "--user", "alice", "--role", "Jit.Root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
}

/// `jitgate arm-sim` alone, and `serve` pointed at it as at Azure: the README's recipe.
#[tokio::test]
async fn serve_in_azure_mode_enforces_through_a_standalone_arm_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = jitgate(dir.path())
        .args([
            "arm-sim",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "sim-secret",
            "--lro-delay",
            "PT0S",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = sim.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ARM simulator on ") {
                let _ = tx.send(rest.split(':').take(3).collect::<Vec<_>>().join(":"));
            }
        }
    });
    let endpoint = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("arm-sim printed its address");
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    const DEMO: &str = "5b1e0000-0000-4000-8000-00000000de30";
    let (mut serve, addr, banner) = start_serve_with(
        dir.path(),
        &[
            ("JITGATE_ARM_MODE", "azure"),
            ("JITGATE_ARM_ENDPOINT", &endpoint),
            ("JITGATE_ARM_CREDENTIAL", "static"),
            ("JITGATE_ARM_STATIC_TOKEN", "sim-secret"),
            ("JITGATE_SUBSCRIPTIONS", DEMO),
        ],
    );
    assert!(banner.contains(&format!("ARM is {endpoint}")), "{banner}");
    let token = admin_token(dir.path());
    let client = reqwest::Client::new();
    let base = format!(
        "http://{addr}/v1/subscriptions/{DEMO}/resourceGroups/rg-demo/virtualMachines/vm-web-1"
    );
    let created = client
        .put(format!("{base}/policy"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let vm: serde_json::Value = client
            .get(&base)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        if vm["policy"]["enforcement"]["state"] == "applied" && vm["assessment"] == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not enforced through the standalone simulator: {vm}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(&serve);
    assert!(wait_exit(&mut serve, Duration::from_secs(20)).success());
    let _ = sim.kill();
    let _ = sim.wait();
}

#[tokio::test]
async fn retention_prunes_old_events_behind_a_signed_checkpoint_and_verify_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, _) = start_serve_with(dir.path(), &[("JITGATE_AUDIT_RETENTION", "PT2S")]);
    let admin = admin_token(dir.path());
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let vm = "/v1/subscriptions/5b1e0000-0000-4000-8000-00000000de30/resourceGroups/rg-demo/virtualMachines/vm-app/policy";
    let put = http
        .put(format!("{base}{vm}"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);

    // The policy's events are pruned a couple of seconds later; verification still holds,
    // counting them, from the signed checkpoint.
    let deadline = Instant::now() + Duration::from_secs(30);
    let verdict = loop {
        let first: serde_json::Value = http
            .get(format!("{base}/v1/audit/events?limit=1"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let verdict: serde_json::Value = http
            .get(format!("{base}/v1/audit/verify"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if first["items"].as_array().unwrap().is_empty() && verdict["events"].as_u64() >= Some(2) {
            break verdict;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was pruned: {first} {verdict}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(verdict["ok"], true, "{verdict}");
    let key = dir.path().join("audit-signing-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the signing key is the owner's alone");
    }
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(20));

    // Offline, with the key, the same verdict.
    let db = format!("sqlite://{}", dir.path().join("jitgate.db").display());
    let out = jitgate(dir.path())
        .args(["audit", "verify", "--database-url", &db, "--signing-key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["ok"], true);
    assert!(offline["events"].as_u64() >= verdict["events"].as_u64());
}
