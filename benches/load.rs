//! Load scenarios against the real service, each figure beside a baseline measured in the same
//! run (these machines are shared and noisy):
//!
//! - `submit`: `POST /v1/access-requests` throughput and latency at 1, 16 and 64 concurrent
//!   clients (auto approval; the ARM simulator, as its own process, at zero operation delay;
//!   `jitgate serve` as a child process), against a bare axum handler doing one insert of the
//!   same size into the same database; with the server's RSS idle and after the run.
//! - `burst`: 100 requests for VMs behind one NSG, the simulator's writes taking 1 s each:
//!   time until all are active, and how many NSG writes it took.
//! - `expiry`: 1,000 grants ending within the same 10 s: lateness of their removal.
//! - `soak` (by hand, not in `all`): `--minutes M` (10) at `--rate R` requests/s (5) with 20% of
//!   ARM calls failing: responses, RSS over time, and whether every grant closed.
//!
//! Run: `cargo bench --bench load -- [submit|burst|expiry|all] [--backend sqlite|postgres]`
//! (Postgres: `JITGATE_BENCH_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test;
//! each run uses a schema of its own and drops it).

mod support;

use axum::extract::State;
use jitgate::arm::sim::seed::{self, DEMO_RESOURCE_GROUP as RG, DEMO_SUBSCRIPTION as SUB};
use jitgate::arm::sim::{FaultPlan, Sim};
use jitgate::auth::dev::{DevKey, DevTokenSpec};
use jitgate::rbac::Role;
use serde_json::json;
use sqlx::Connection;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{add_vms, in_process, ms, percentile};

const BIN: &str = env!("CARGO_BIN_EXE_jitgate");

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// A database for one run: a temp SQLite file, or a fresh schema in Postgres (dropped after).
struct Db {
    url: String,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Db {
    async fn new(backend: &str) -> Db {
        let dir = tempfile::tempdir().unwrap();
        if backend == "postgres" {
            let base = std::env::var("JITGATE_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await
                .unwrap();
            Db {
                url: format!("{base}?options=-c%20search_path%3D{schema}"),
                pg: Some((base, schema)),
                _dir: dir,
            }
        } else {
            Db {
                url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                pg: None,
                _dir: dir,
            }
        }
    }

    async fn drop_schema(&self) {
        if let Some((base, schema)) = &self.pg {
            let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

// ---- processes ----

/// Runs `cmd` and returns it with the first stderr line `pick` maps, other lines discarded.
fn spawn_reading(mut cmd: Command, pick: fn(&str) -> Option<String>) -> (Child, String) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(found) = pick(&line) {
                let _ = tx.send(found);
            }
        }
    });
    let found = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the process started");
    (child, found)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Processes killed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The baseline: a bare axum handler inserting the body it is given, one row, into the same
/// database jitgate uses.
async fn baseline_server(db_url: &str) -> String {
    #[derive(Clone)]
    enum Pool {
        Sqlite(sqlx::SqlitePool),
        Pg(sqlx::PgPool),
    }
    let pool = if db_url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = db_url.parse().unwrap();
        let pool = sqlx::SqlitePool::connect_with(
            options
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_baseline (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        Pool::Sqlite(pool)
    } else {
        let pool = sqlx::PgPool::connect(db_url).await.unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_baseline (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        Pool::Pg(pool)
    };
    async fn insert(State(pool): State<Pool>, body: String) -> axum::http::StatusCode {
        let id = uuid::Uuid::now_v7().to_string();
        let done = match &pool {
            Pool::Sqlite(p) => sqlx::query("INSERT INTO bench_baseline (id, body) VALUES ($1, $2)")
                .bind(id)
                .bind(body)
                .execute(p)
                .await
                .map(|_| ()),
            Pool::Pg(p) => sqlx::query("INSERT INTO bench_baseline (id, body) VALUES ($1, $2)")
                .bind(id)
                .bind(body)
                .execute(p)
                .await
                .map(|_| ()),
        };
        match done {
            Ok(()) => axum::http::StatusCode::CREATED,
            Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    let app = axum::Router::new()
        .route("/baseline", axum::routing::post(insert))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/baseline", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// `total` POSTs from `clients` concurrent clients; returns the latencies and the wall time.
async fn drive(
    clients: usize,
    total: usize,
    make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
) -> (Vec<Duration>, Duration, usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, make) = (next.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return (lat, errors);
                }
                let t = Instant::now();
                match make(i).send().await {
                    Ok(r) if r.status().is_success() => {}
                    _ => errors += 1,
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    (all, started.elapsed(), errors)
}

const VMS: [&str; 4] = ["vm-web-1", "vm-web-2", "vm-rdp", "vm-app"];

/// `jitgate serve` and the ARM simulator (with `sim_args`) as child processes, on `db`, with
/// policies on the demo VMs.
struct Service {
    base: String,
    serve_pid: u32,
    http: reqwest::Client,
    admin: String,
    alice: String,
    _children: Children,
    _dir: tempfile::TempDir,
}

async fn service(db: &Db, sim_args: &[&str]) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let mut children = Children(vec![]);
    let (sim, sim_url) = spawn_reading(
        {
            let mut c = Command::new(BIN);
            c.args([
                "arm-sim",
                "--listen",
                "127.0.0.1:0",
                "--token",
                "bench",
                "--lro-delay",
                "PT0S",
            ])
            .args(sim_args);
            c
        },
        |line| {
            line.strip_prefix("ARM simulator on ")
                .map(|rest| rest.split(':').take(3).collect::<Vec<_>>().join(":"))
        },
    );
    children.0.push(sim);
    let (serve, base) = spawn_reading(
        {
            let mut c = Command::new(BIN);
            c.arg("serve").current_dir(dir.path()).envs([
                ("JITGATE_LISTEN", "127.0.0.1:0"),
                ("JITGATE_DATABASE_URL", db.url.as_str()),
                ("JITGATE_ARM_MODE", "azure"),
                ("JITGATE_ARM_ENDPOINT", sim_url.as_str()),
                ("JITGATE_ARM_CREDENTIAL", "static"),
                ("JITGATE_ARM_STATIC_TOKEN", "bench"),
                ("JITGATE_SUBSCRIPTIONS", SUB),
                ("JITGATE_MIN_ACCESS_DURATION", "PT1S"),
                // Every request comes from one caller: the per-caller limit is not measured.
                ("JITGATE_RATE_LIMIT", "0"),
                ("RUST_LOG", "warn"),
            ]);
            c
        },
        |line| {
            line.split("http://")
                .nth(1)
                .and_then(|rest| rest.strip_suffix("/v1/me"))
                .map(|a| format!("http://{a}"))
        },
    );
    let serve_pid = serve.id();
    children.0.push(serve);
    let key = DevKey::load_or_create(dir.path()).unwrap();
    let admin = key
        .mint(&DevTokenSpec::user("admin", &[Role::Admin]))
        .unwrap();
    let alice = key
        .mint(&DevTokenSpec::user("alice", &[Role::Requester]))
        .unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    for vm in VMS {
        let r = http
            .put(format!(
                "{base}/v1/subscriptions/{SUB}/resourceGroups/{RG}/virtualMachines/{vm}/policy"
            ))
            .bearer_auth(&admin)
            .json(&json!({ "ports": [{ "number": 22, "maxRequestAccessDuration": "PT1H" }] }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    Service {
        base,
        serve_pid,
        http,
        admin,
        alice,
        _children: children,
        _dir: dir,
    }
}

/// A request body for the `i`-th request: a demo VM in turn, a source of its own.
fn ask_body(i: usize, duration: &str) -> serde_json::Value {
    json!({
        "virtualMachines": [{ "id": seed::vm_id(SUB, RG, VMS[i % VMS.len()]), "ports": [{ "number": 22, "duration": duration,
            "allowedSourceAddressPrefix": format!("10.{}.{}.{}", (i / 62500) % 250, (i / 250) % 250, 1 + i % 250) }] }],
        "justification": "INC-4242: load test",
    })
}

async fn submit(backend: &str) {
    let db = Db::new(backend).await;
    let svc = service(&db, &[]).await;
    let Service {
        base,
        serve_pid,
        http,
        alice,
        ..
    } = &svc;
    let (base, serve_pid) = (base.clone(), *serve_pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_kib(serve_pid);
    let baseline = baseline_server(&db.url).await;

    println!("\n## submit ({backend}): POST /v1/access-requests, auto approval, ARM simulator at zero delay");
    println!("| clients | requests | jitgate req/s | baseline req/s | ratio | jitgate p50 / p99 ms | baseline p50 / p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut n = 0usize;
    for clients in [1usize, 16, 64] {
        let total = 150 * clients.min(8);
        let body = |i: usize| ask_body(i, "PT1S");
        let offset = n;
        let (h, j) = (http.clone(), alice.clone());
        let b2 = base.clone();
        let ours: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> =
            Arc::new(move |i| {
                h.post(format!("{b2}/v1/access-requests"))
                    .bearer_auth(&j)
                    .json(&body(offset + i))
            });
        let (mut lat, wall, errors) = drive(clients, total, ours).await;
        n += total;
        let h = http.clone();
        let url = baseline.clone();
        let theirs: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync> =
            Arc::new(move |i| h.post(&url).body(body(offset + i).to_string()));
        let (mut base_lat, base_wall, _) = drive(clients, total, theirs).await;
        let rate = total as f64 / wall.as_secs_f64();
        let base_rate = total as f64 / base_wall.as_secs_f64();
        println!(
            "| {clients} | {total} | {rate:.0} | {base_rate:.0} | {:.2}x | {:.1} / {:.1} | {:.1} / {:.1} | {errors} |",
            rate / base_rate,
            ms(percentile(&mut lat, 0.5)),
            ms(percentile(&mut lat, 0.99)),
            ms(percentile(&mut base_lat, 0.5)),
            ms(percentile(&mut base_lat, 0.99)),
        );
    }
    let after_rss = rss_kib(serve_pid);
    println!(
        "\nserver RSS: idle {:.1} MiB, after the submit runs {:.1} MiB",
        idle_rss as f64 / 1024.0,
        after_rss as f64 / 1024.0
    );
    drop(svc);
    db.drop_schema().await;
}

async fn burst() {
    let sim = Sim::new(FaultPlan {
        lro_delay: Duration::ZERO,
        ..FaultPlan::default()
    })
    .with_token("bench");
    seed::demo(&sim);
    let names = add_vms(&sim, 100, true);
    let app = in_process(&sim).await;
    app.protect(&names).await;
    let nsg = seed::nsg_id(SUB, RG, "nsg-load");
    let writes_before = sim.nsg_writes(&nsg);
    // Baseline: one write of that NSG at the same 1 s delay, as the simulator serves it.
    sim.set_faults(FaultPlan {
        lro_delay: Duration::from_secs(1),
        ..FaultPlan::default()
    });
    let started = Instant::now();
    for (i, name) in names.iter().enumerate() {
        app.ask(name, "PT1H", &format!("203.0.113.{}", 1 + i % 250))
            .await;
    }
    let submitted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    let all_active = loop {
        let statuses = app.statuses().await;
        if statuses.iter().filter(|s| *s == "active").count() == names.len() {
            break Some(started.elapsed());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let writes = sim.nsg_writes(&nsg) - writes_before;
    println!("\n## burst: 100 requests, 100 VMs behind one NSG, each NSG write taking 1 s");
    println!("| submitted in | all active after | NSG writes | baseline: one write | naive (one write each, in turn) |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.2} s | {} | {writes} | 1.0 s | 100 writes, >= 100 s |",
        submitted.as_secs_f64(),
        all_active
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or_else(|| "not within 300 s".into()),
    );
}

async fn expiry() {
    let sim = Sim::new(FaultPlan {
        lro_delay: Duration::ZERO,
        ..FaultPlan::default()
    })
    .with_token("bench");
    seed::demo(&sim);
    let names = add_vms(&sim, 1000, false);
    let app = in_process(&sim).await;
    app.protect(&names).await;
    // 1,000 grants, asked for within a few seconds, all ending within the same 10 s.
    let start = Instant::now();
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        ids.push(
            app.ask(name, "PT30S", &format!("198.51.100.{}", 1 + i % 250))
                .await,
        );
    }
    let asked = start.elapsed();
    let mut healthz = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let t = Instant::now();
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap();
        healthz.push(t.elapsed());
        let statuses = app.statuses().await;
        if statuses.iter().filter(|s| *s == "expired").count() == ids.len()
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = app.store.audit_events_after(0, 10_000_000).await.unwrap();
    let mut ends = std::collections::HashMap::new();
    for e in &events {
        if e.event_type == "request.activated" {
            if let (Some(id), Some(end)) = (
                e.request_id.clone(),
                e.data["virtualMachines"][0]["ports"][0]["endTimeUtc"].as_str(),
            ) {
                ends.insert(id, end.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
            }
        }
    }
    let mut lateness: Vec<Duration> = events
        .iter()
        .filter(|e| e.event_type == "request.expired")
        .filter_map(|e| {
            let end = ends.get(e.request_id.as_deref()?)?;
            Some((e.at - *end).to_std().unwrap_or_default())
        })
        .collect();
    let spread = {
        let mut v: Vec<_> = ends.values().copied().collect();
        v.sort();
        v.last()
            .zip(v.first())
            .map(|(a, b)| (*a - *b).num_milliseconds())
            .unwrap_or(0)
    };
    let closed = lateness.len();
    println!(
        "\n## expiry: 1,000 grants ending within {:.1} s of each other (asked for in {:.1} s)",
        spread as f64 / 1000.0,
        asked.as_secs_f64()
    );
    println!("| closed | lateness p50 | p99 | max | baseline GET /healthz p50 meanwhile |");
    println!("|---|---|---|---|---|");
    let max = lateness.iter().max().copied().unwrap_or_default();
    println!(
        "| {closed} / {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} ms |",
        ids.len(),
        ms(percentile(&mut lateness, 0.5)),
        ms(percentile(&mut lateness, 0.99)),
        ms(max),
        ms(percentile(&mut healthz, 0.5)),
    );
}

/// A fixed rate of requests for `minutes`, the simulator failing 20% of ARM calls (10%
/// throttled with 429, 10% answered 500/503): no error responses but the injected ones may
/// reach clients, memory must stay flat, and every grant must close.
async fn soak(minutes: u64, rate: u64) {
    let db = Db::new("sqlite").await;
    let svc = service(
        &db,
        &["--throttle-rate", "0.1", "--server-error-rate", "0.1"],
    )
    .await;
    let started = Instant::now();
    let run_for = Duration::from_secs(minutes * 60);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate.max(1)));
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut rss = vec![(0u64, rss_kib(svc.serve_pid))];
    let mut i = 0usize;
    let mut last_sample = Instant::now();
    while started.elapsed() < run_for {
        tick.tick().await;
        let response = svc
            .http
            .post(format!("{}/v1/access-requests", svc.base))
            .bearer_auth(&svc.alice)
            .json(&ask_body(i, "PT20S"))
            .send()
            .await;
        *statuses
            .entry(response.map(|r| r.status().as_u16()).unwrap_or(0))
            .or_default() += 1;
        i += 1;
        if last_sample.elapsed() >= Duration::from_secs(30) {
            rss.push((started.elapsed().as_secs(), rss_kib(svc.serve_pid)));
            last_sample = Instant::now();
        }
    }
    // Every grant ends within its 20 s, or fails: wait for none to be left open.
    let settle = Instant::now();
    let open = loop {
        let active: serde_json::Value = svc
            .http
            .get(format!("{}/v1/grants?status=active&limit=1000", svc.base))
            .bearer_auth(&svc.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let open = active["items"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(usize::MAX);
        if open == 0 || settle.elapsed() > Duration::from_secs(300) {
            break open;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    rss.push((started.elapsed().as_secs(), rss_kib(svc.serve_pid)));
    let grants: serde_json::Value = svc
        .http
        .get(format!("{}/v1/grants?limit=1", svc.base))
        .bearer_auth(&svc.admin)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| {
            let mut by = std::collections::BTreeMap::<String, usize>::new();
            for line in t.lines() {
                let g: serde_json::Value = serde_json::from_str(line).unwrap();
                *by.entry(g["status"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
            json!(by)
        })
        .unwrap();
    println!("\n## soak: {minutes} min at {rate} requests/s, 20% of ARM calls failing (10% 429, 10% 5xx)");
    println!("| requests | responses by status | grants by status at the end | grants left open | server RSS (s: MiB) |");
    println!("|---|---|---|---|---|");
    println!(
        "| {i} | {statuses:?} | {grants} | {open} (after {:.0} s) | {} |",
        settle.elapsed().as_secs_f64(),
        rss.iter()
            .map(|(t, k)| format!("{t}: {:.1}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(svc);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scenario = std::env::args()
        .skip(1)
        .find(|a| ["submit", "burst", "expiry", "soak", "all"].contains(&a.as_str()))
        .unwrap_or_else(|| "all".into());
    let backend = arg("--backend");
    let backends: Vec<&str> = match backend.as_deref() {
        Some(b) => vec![b],
        None => vec!["sqlite", "postgres"],
    };
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name\t: "))
            .unwrap_or("unknown CPU")
    );
    if matches!(scenario.as_str(), "submit" | "all") {
        for b in &backends {
            submit(b).await;
        }
    }
    if matches!(scenario.as_str(), "burst" | "all") {
        burst().await;
    }
    if matches!(scenario.as_str(), "expiry" | "all") {
        expiry().await;
    }
    if scenario == "soak" {
        let minutes = arg("--minutes").and_then(|m| m.parse().ok()).unwrap_or(10);
        let rate = arg("--rate").and_then(|r| r.parse().ok()).unwrap_or(5);
        soak(minutes, rate).await;
    }
}
