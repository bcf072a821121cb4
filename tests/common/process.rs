//! Running the `jitgate` binary as a process: `serve` and `arm-sim` children, tokens, SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_jitgate");
pub const DEMO: &str = "5b1e0000-0000-4000-8000-00000000de30";

/// A command with none of the developer's JITGATE_* settings, so it sees only what it is given.
pub fn jitgate(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("JITGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `cmd` and returns it with the first stderr line `pick` accepts, mapped.
pub fn spawn_reading(mut cmd: Command, pick: fn(&str) -> Option<String>) -> (Child, String) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log_path = std::env::var("JITGATE_TEST_PROCESS_LOG").ok();
    std::thread::spawn(move || {
        let mut log = log_path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = log.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
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

/// `jitgate arm-sim` on a free port with `token`; returns it and its base URL.
pub fn start_arm_sim(dir: &std::path::Path, token: &str) -> (Child, String) {
    let mut cmd = jitgate(dir);
    cmd.args([
        "arm-sim",
        "--listen",
        "127.0.0.1:0",
        "--token",
        token,
        "--lro-delay",
        "PT0S",
    ]);
    spawn_reading(cmd, |line| {
        line.strip_prefix("ARM simulator on ")
            .map(|rest| rest.split(':').take(3).collect::<Vec<_>>().join(":"))
    })
}

/// `jitgate serve` against the standalone simulator at `endpoint`, with `extra` settings;
/// returns it and its base URL.
pub fn start_serve(
    dir: &std::path::Path,
    endpoint: &str,
    sim_token: &str,
    extra: &[(&str, &str)],
) -> (Child, String) {
    let mut cmd = jitgate(dir);
    cmd.arg("serve")
        .envs([
            ("JITGATE_LISTEN", "127.0.0.1:0"),
            ("JITGATE_ARM_MODE", "azure"),
            ("JITGATE_ARM_ENDPOINT", endpoint),
            ("JITGATE_ARM_CREDENTIAL", "static"),
            ("JITGATE_ARM_STATIC_TOKEN", sim_token),
            ("JITGATE_SUBSCRIPTIONS", DEMO),
            ("JITGATE_MIN_ACCESS_DURATION", "PT1S"),
        ])
        .envs(extra.iter().copied());
    spawn_reading(cmd, |line| {
        line.split("http://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/v1/me"))
            .map(|a| format!("http://{a}"))
    })
}

/// A dev token from `jitgate token` (the key lives in `dir`).
pub fn token(dir: &std::path::Path, user: &str, role: &str) -> String {
    let out = jitgate(dir)
        .args(["token", "--user", user, "--role", role])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn kill9(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// Child processes killed when dropped, so that a failing test leaves none running (holding
/// database connections and ports) behind it.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    pub fn add(&mut self, child: Child) -> usize {
        self.0.push(child);
        self.0.len() - 1
    }

    pub fn kill(&mut self, i: usize) {
        kill9(&mut self.0[i]);
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            kill9(child);
        }
    }
}
