//! Grant history at the size of a real estate: how fast an auditor's filtered pages answer and
//! how fast (and in how little memory) a full export streams, on SQLite or PostgreSQL.
//!
//! The database is filled by the release `jitgate seed-history` and served by the release
//! `jitgate serve`, both child processes; the bench talks to the server over HTTP. Latencies
//! are also given as ratios to a bare HTTP round trip (`GET /healthz`) and export speeds as
//! ratios to a raw `SELECT * FROM grants` read by this process, both measured in the same run,
//! since these machines are shared and noisy.
//!
//! Run: `cargo bench --bench history -- --grants N --backend sqlite|postgres [--reuse]`
//! (`--samples S`, default 200). SQLite files live in `target/bench-history/`; PostgreSQL
//! databases are `jitgate_bench_hist_N` on `--pg-url` (default
//! `postgres://postgres@127.0.0.1:5432`). `--reuse` keeps a database already holding exactly
//! N grants; without it the database is recreated. `--drop` deletes it at the end.

use futures_util::StreamExt;
use jitgate::history_seed::HistorySpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const JITGATE: &str = env!("CARGO_BIN_EXE_jitgate");

struct Args {
    grants: u64,
    backend: String,
    reuse: bool,
    drop: bool,
    samples: usize,
    pg_url: String,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let flag = |name: &str| argv.iter().any(|a| a == name);
    Args {
        grants: value("--grants")
            .map(|v| v.replace('_', "").parse().expect("--grants N"))
            .unwrap_or(100_000),
        backend: value("--backend").unwrap_or_else(|| "sqlite".into()),
        reuse: flag("--reuse"),
        drop: flag("--drop"),
        samples: value("--samples")
            .map(|v| v.parse().expect("--samples S"))
            .unwrap_or(200),
        pg_url: value("--pg-url").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into()),
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Kills (and reaps) a child process when dropped, so a panicking bench leaves none behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn machine() -> (usize, String, String) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1048576.0))
        .unwrap_or_else(|| "?".into());
    (cpus, model, mem)
}

/// Where the bench's database lives, and how to (re)create and reach it.
enum Db {
    Sqlite(PathBuf),
    Postgres { admin: String, name: String },
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite://{}", path.display()),
            Db::Postgres { admin, name } => format!("{admin}/{name}"),
        }
    }

    async fn drop_it(&self) {
        match self {
            Db::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Db::Postgres { admin, name } => {
                let admin = sqlx::PgPool::connect(&format!("{admin}/postgres"))
                    .await
                    .unwrap();
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await
                    .unwrap();
            }
        }
    }

    async fn create(&self) {
        match self {
            Db::Sqlite(path) => std::fs::create_dir_all(path.parent().unwrap()).unwrap(),
            Db::Postgres { admin, name } => {
                let admin = sqlx::PgPool::connect(&format!("{admin}/postgres"))
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
            }
        }
    }

    /// The grants it holds, or `None` when it does not exist (or has no grants table).
    async fn grants(&self) -> Option<i64> {
        match self {
            Db::Sqlite(path) => {
                if !path.exists() {
                    return None;
                }
                let pool = sqlx::SqlitePool::connect(&self.url()).await.ok()?;
                let n = sqlx::query_scalar("SELECT COUNT(*) FROM grants")
                    .fetch_one(&pool)
                    .await
                    .ok();
                // Closed, not dropped: the last connection out checkpoints the WAL, which
                // must not overlap the server's start.
                pool.close().await;
                n
            }
            Db::Postgres { .. } => {
                let pool = sqlx::PgPool::connect(&self.url()).await.ok()?;
                let n = sqlx::query_scalar("SELECT COUNT(*) FROM grants")
                    .fetch_one(&pool)
                    .await
                    .ok();
                pool.close().await;
                n
            }
        }
    }

    async fn size_bytes(&self) -> u64 {
        match self {
            Db::Sqlite(path) => ["", "-wal"]
                .iter()
                .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
                .map(|m| m.len())
                .sum(),
            Db::Postgres { .. } => {
                let pool = sqlx::PgPool::connect(&self.url()).await.unwrap();
                let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                size as u64
            }
        }
    }

    /// Oldest and newest `granted_at`, as RFC 3339.
    async fn span(&self) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
        let parse = |s: String| {
            chrono::DateTime::parse_from_rfc3339(&s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        match self {
            Db::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url()).await.unwrap();
                // Two queries: SQLite answers a lone MIN or MAX from the index, both at once
                // by a full scan.
                let lo: String = sqlx::query_scalar("SELECT MIN(granted_at) FROM grants")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                let hi: String = sqlx::query_scalar("SELECT MAX(granted_at) FROM grants")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                (parse(lo), parse(hi))
            }
            Db::Postgres { .. } => {
                let pool = sqlx::PgPool::connect(&self.url()).await.unwrap();
                let span = sqlx::query_as("SELECT MIN(granted_at), MAX(granted_at) FROM grants")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                span
            }
        }
    }

    /// A raw, unordered read of every row and column of `grants`, decoded to Rust types by
    /// sqlx in this process: the rows/s that no export can beat.
    async fn raw_read(&self) -> (u64, Duration) {
        const SELECT: &str = "SELECT id, request_id, vm_id, vm_key, subscription_key, \
            resource_group_key, port, protocol, source_prefix, requestor_id, requestor_name, \
            submitted_by_id, submitted_by_name, approvers, justification, granted_at, end_time, \
            closed_at, status, status_reason FROM grants";
        type Time = Option<chrono::DateTime<chrono::Utc>>;
        let mut rows = 0u64;
        let mut bytes = 0usize;
        let started;
        macro_rules! drain {
            ($pool:expr, $row:ty) => {{
                let pool = $pool;
                started = Instant::now();
                let mut stream = sqlx::query(SELECT).fetch(&pool);
                while let Some(row) = stream.next().await {
                    let row: $row = row.unwrap();
                    for i in 0..20 {
                        match i {
                            6 => bytes += row.get::<i32, _>(i) as usize,
                            14 => bytes += row.get::<Option<String>, _>(i).map_or(0, |s| s.len()),
                            15..=17 => bytes += usize::from(row.get::<Time, _>(i).is_some()),
                            _ => bytes += row.get::<String, _>(i).len(),
                        }
                    }
                    rows += 1;
                }
                drop(stream);
                pool.close().await;
            }};
        }
        match self {
            Db::Sqlite(_) => drain!(
                sqlx::SqlitePool::connect(&self.url()).await.unwrap(),
                sqlx::sqlite::SqliteRow
            ),
            Db::Postgres { .. } => drain!(
                sqlx::PgPool::connect(&self.url()).await.unwrap(),
                sqlx::postgres::PgRow
            ),
        }
        std::hint::black_box(bytes);
        (rows, started.elapsed())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(db: &Db, data_dir: &Path) -> (Reaped, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(JITGATE)
        .arg("serve")
        .env("JITGATE_DATABASE_URL", db.url())
        .env("JITGATE_LISTEN", &listen)
        .env("JITGATE_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        // One auditor asks hundreds of times: the per-caller limit is not what is measured.
        .env("JITGATE_RATE_LIMIT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("jitgate serve");
    (Reaped(child), format!("http://{listen}"))
}

fn token(data_dir: &Path) -> String {
    let out = Command::new(JITGATE)
        .args(["token", "--user", "aud", "--role", "Jit.Auditor"])
        .env("JITGATE_DATA_DIR", data_dir)
        .output()
        .expect("jitgate token");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One timed GET of a JSON page; returns its `nextCursor` and item count.
async fn page(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &[(&str, String)],
) -> (Duration, Option<String>, usize) {
    let t = Instant::now();
    let response = http
        .get(url)
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.bytes().await.unwrap();
    let elapsed = t.elapsed();
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    (
        elapsed,
        v["nextCursor"].as_str().map(str::to_string),
        v["items"].as_array().map(Vec::len).unwrap_or(0),
    )
}

struct Export {
    rows: u64,
    bytes: u64,
    took: Duration,
    rss_before: u64,
    /// Peak RSS (KiB) seen by the time 10%, 50% and 100% of the rows were read.
    rss_peak_at: [u64; 3],
}

/// Streams the full export in `accept`, counting rows as they arrive (CSV records end in CRLF,
/// while a justification's own line breaks are bare LF; NDJSON escapes them), and samples the
/// server's RSS every 100 ms.
async fn export(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    accept: &str,
    expected: u64,
    pid: u32,
) -> Export {
    let rows = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let rss_before = rss_kib(pid).unwrap_or(0);
    let sampler = {
        let (rows, done) = (rows.clone(), done.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    samples.push((rows.load(Ordering::Relaxed), rss));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };
    let csv = accept == "text/csv";
    let started = Instant::now();
    let response = http
        .get(format!("{base}/v1/grants"))
        .bearer_auth(token)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let mut response = response;
    let (mut bytes, mut lines, mut last) = (0u64, 0u64, 0u8);
    while let Some(chunk) = response.chunk().await.expect("export aborted") {
        bytes += chunk.len() as u64;
        for &b in chunk.iter() {
            if b == b'\n' && (!csv || last == b'\r') {
                lines += 1;
            }
            last = b;
        }
        rows.store(lines.saturating_sub(u64::from(csv)), Ordering::Relaxed);
    }
    let took = started.elapsed();
    let rows_total = lines.saturating_sub(u64::from(csv));
    rows.store(rows_total, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    done.store(true, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let peak_by = |fraction: f64| {
        let limit = (expected as f64 * fraction) as u64;
        samples
            .iter()
            .filter(|(r, _)| *r <= limit)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(rss_before)
    };
    Export {
        rows: rows_total,
        bytes,
        took,
        rss_before,
        rss_peak_at: [peak_by(0.1), peak_by(0.5), peak_by(1.0)],
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let n = args.grants;
    let db = match args.backend.as_str() {
        "sqlite" => Db::Sqlite(
            Path::new(JITGATE)
                .parent()
                .unwrap()
                .join("../bench-history")
                .join(format!("grants-{n}.db")),
        ),
        "postgres" => Db::Postgres {
            admin: args.pg_url.trim_end_matches('/').to_string(),
            name: format!("jitgate_bench_hist_{n}"),
        },
        other => panic!("--backend sqlite|postgres, not {other}"),
    };
    let (cpus, model, mem) = machine();
    println!(
        "grant history bench: {n} grants, {} backend, {cpus} CPUs ({model}), {mem} RAM",
        args.backend
    );

    // 1. The database.
    let held = db.grants().await;
    let seeded = if args.reuse && held == Some(n as i64) {
        println!("reusing {} ({n} grants)", db.url());
        None
    } else {
        if args.reuse {
            println!("--reuse: the database holds {held:?} grants, not {n}: seeding afresh");
        }
        db.drop_it().await;
        db.create().await;
        let started = Instant::now();
        let status = Command::new(JITGATE)
            .args(["seed-history", "--grants", &n.to_string()])
            .env("JITGATE_DATABASE_URL", db.url())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("jitgate seed-history");
        assert!(status.success(), "seed-history failed: {status}");
        let took = started.elapsed();
        println!(
            "seeded {n} grants in {:.1} s ({:.0} rows/s)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        Some(took)
    };
    let db_size = db.size_bytes().await;
    let (oldest, newest) = db.span().await;

    // 2. The server and a token.
    let data_dir = tempfile::tempdir().unwrap();
    let auditor = token(data_dir.path());
    let (server, base) = start_server(&db, data_dir.path());
    let pid = server.0.id();
    let http = reqwest::Client::new();
    let ready = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            ready.elapsed() < Duration::from_secs(120),
            "jitgate serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grants_url = format!("{base}/v1/grants");
    let healthz_url = format!("{base}/healthz");

    // 3. Filtered first pages, interleaved with the baseline so that noise hits all alike.
    let mut rng = StdRng::seed_from_u64(42);
    let ports = [22u16, 3389, 5985, 5986];
    let month = chrono::Duration::days(30);
    let history_days = (newest - oldest).num_days().max(31);
    let window = |rng: &mut StdRng| {
        let from = oldest + chrono::Duration::days(rng.gen_range(0..history_days - 30));
        (from.to_rfc3339(), (from + month).to_rfc3339())
    };
    let kinds = [
        "by vmId",
        "by requestor",
        "by port + month",
        "by status=active",
        "by vmId + month",
        "unfiltered newest",
    ];
    let queries = |rng: &mut StdRng| -> Vec<Vec<(&'static str, String)>> {
        let limit = ("limit", "100".to_string());
        let vm = || HistorySpec::vm_id(rand::thread_rng().gen_range(0..2000));
        let (from, to) = window(rng);
        let (from2, to2) = window(rng);
        vec![
            vec![limit.clone(), ("vmId", vm())],
            vec![
                limit.clone(),
                ("requestor", HistorySpec::user_id(rng.gen_range(0..1000))),
            ],
            vec![
                limit.clone(),
                ("port", ports[rng.gen_range(0..4)].to_string()),
                ("from", from),
                ("to", to),
            ],
            vec![limit.clone(), ("status", "active".into())],
            vec![limit.clone(), ("vmId", vm()), ("from", from2), ("to", to2)],
            vec![limit],
        ]
    };
    for _ in 0..10 {
        http.get(&healthz_url).send().await.unwrap();
        for q in queries(&mut rng) {
            page(&http, &grants_url, &auditor, &q).await;
        }
    }
    let mut baseline = Vec::new();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let mut found: Vec<usize> = vec![0; kinds.len()];
    for _ in 0..args.samples {
        let t = Instant::now();
        let r = http.get(&healthz_url).send().await.unwrap();
        r.bytes().await.unwrap();
        baseline.push(t.elapsed());
        for (k, q) in queries(&mut rng).into_iter().enumerate() {
            let (took, _, items) = page(&http, &grants_url, &auditor, &q).await;
            times[k].push(took);
            found[k] += items;
        }
    }
    // Deep pages: follow nextCursor up to 50 pages of one VM's history, then another VM, until
    // `samples` pages beyond the first were timed (or as many VMs were tried, for a history
    // too small to have deep pages).
    let mut deep = Vec::new();
    let mut deepest = 1;
    let mut last_pages = Vec::new();
    while deep.len() < args.samples && last_pages.len() < args.samples {
        let vm = HistorySpec::vm_id(rng.gen_range(0..2000));
        let mut cursor: Option<String> = None;
        for depth in 0..50 {
            let mut q = vec![("limit", "100".to_string()), ("vmId", vm.clone())];
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let (took, next, _) = page(&http, &grants_url, &auditor, &q).await;
            if depth > 0 {
                deep.push(took);
                deepest = deepest.max(depth + 1);
            }
            cursor = next;
            if cursor.is_none() || depth == 49 {
                last_pages.push(took);
                break;
            }
        }
    }

    let b50 = percentile(&mut baseline, 0.5);
    let b95 = percentile(&mut baseline, 0.95);
    println!();
    println!(
        "| {} backend, {n} grants ({:.2} GB on disk) | p50 ms | p95 ms | p50 / healthz | p95 / healthz | rows/page |",
        args.backend,
        db_size as f64 / 1e9
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| baseline GET /healthz | {:.2} | {:.2} | 1.0 | 1.0 | |",
        ms(b50),
        ms(b95)
    );
    let row = |name: &str, samples: &mut Vec<Duration>, rows: String| {
        let p50 = percentile(samples, 0.5);
        let p95 = percentile(samples, 0.95);
        println!(
            "| {name} | {:.2} | {:.2} | {:.1}x | {:.1}x | {rows} |",
            ms(p50),
            ms(p95),
            ms(p50) / ms(b50),
            ms(p95) / ms(b95)
        );
        p95
    };
    let mut misses = Vec::new();
    for (k, name) in kinds.iter().enumerate() {
        let rows = format!("{:.0}", found[k] as f64 / args.samples as f64);
        let p95 = row(&format!("first page {name}"), &mut times[k], rows);
        if p95 > Duration::from_millis(20) {
            misses.push(name.to_string());
        }
    }
    if !deep.is_empty() {
        let p95 = row(
            &format!("deep page by vmId (pages 2..{deepest}, each)"),
            &mut deep,
            "100".into(),
        );
        if p95 > Duration::from_millis(20) {
            misses.push("deep page".into());
        }
    }
    row(
        &format!("last page reached (page {deepest} or the VM's last)"),
        &mut last_pages,
        String::new(),
    );

    // 4. Full exports against a raw read of the same table.
    let (raw_rows, raw_took) = db.raw_read().await;
    let raw_rate = raw_rows as f64 / raw_took.as_secs_f64();
    println!();
    println!(
        "| full export, {} backend, {n} grants | rows | MB | s | rows/s | / raw read | server RSS before | peak by 10% | by 50% | by 100% |",
        args.backend
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| raw `SELECT * FROM grants` (sqlx, in the bench process) | {raw_rows} | | {:.1} | {:.0} | 1.0 | | | | |",
        raw_took.as_secs_f64(),
        raw_rate
    );
    for (name, accept) in [("CSV", "text/csv"), ("NDJSON", "application/x-ndjson")] {
        let e = export(&http, &base, &auditor, accept, n, pid).await;
        let rate = e.rows as f64 / e.took.as_secs_f64();
        let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);
        println!(
            "| GET /v1/grants, Accept: {accept} | {} | {:.0} | {:.1} | {:.0} | {:.2}x | {} | {} | {} | {} |",
            e.rows,
            e.bytes as f64 / 1e6,
            e.took.as_secs_f64(),
            rate,
            rate / raw_rate,
            mib(e.rss_before),
            mib(e.rss_peak_at[0]),
            mib(e.rss_peak_at[1]),
            mib(e.rss_peak_at[2]),
        );
        assert_eq!(e.rows, n, "{name} export row count");
    }

    // 5. The facts of the run.
    println!();
    println!("| machine | |");
    println!("|---|---|");
    println!("| CPUs (available parallelism) | {cpus} |");
    println!("| CPU model | {model} |");
    println!("| RAM | {mem} |");
    println!("| backend | {} |", args.backend);
    println!(
        "| grants | {n} ({} to {}) |",
        oldest.date_naive(),
        newest.date_naive()
    );
    println!("| database size | {:.2} GB |", db_size as f64 / 1e9);
    match seeded {
        Some(took) => println!(
            "| seeding (jitgate seed-history) | {:.1} s, {:.0} rows/s |",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        ),
        None => println!("| seeding | reused an already seeded database |"),
    }
    println!("| samples per query | {} |", args.samples);
    if misses.is_empty() {
        println!("target (filtered page p95 <= 20 ms): met by every filter");
    } else {
        println!(
            "target (filtered page p95 <= 20 ms): MISSED by {}",
            misses.join(", ")
        );
    }

    drop(server);
    if args.drop {
        db.drop_it().await;
        println!("dropped {}", db.url());
    }
}
