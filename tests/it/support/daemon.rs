//! Runs the real `herald` binary: a temp data dir, a generated config on port 0, and a fake
//! systemd notify socket through which the daemon says READY (with the addresses it bound) and
//! STOPPING — so tests start, kill -9, SIGTERM and restart the daemon exactly as systemd would.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// A running Herald.
pub struct Herald {
    child: Child,
    pub addr: SocketAddr,
    pub socket: Option<PathBuf>,
    pub dir: Arc<tempfile::TempDir>,
    config: String,
    /// The open-file limit it runs under (`Options::open_files`), and its seccomp filter.
    open_files: Option<u64>,
    syscall_filter: Option<SyscallFilter>,
    notify: UnixDatagram,
    /// Every notify message seen so far.
    pub notices: Vec<String>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The config every test starts from; `extra` is appended (TOML tables may not repeat, so tests
/// that need other `[server]` or `[delivery]` keys pass them through [`Options`]).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub unix_socket: bool,
    pub server: String,
    pub storage: String,
    pub delivery: String,
    pub auth: String,
    pub ingest: String,
    /// Replaces the default `allow_networks = ["127.0.0.0/8"]`.
    pub no_loopback: bool,
    /// Runs Herald with this open-file limit, soft and hard (`ulimit -n`).
    pub open_files: Option<u64>,
    /// Runs Herald under this seccomp filter.
    pub syscall_filter: Option<SyscallFilter>,
}

/// A compiled seccomp filter, installed in Herald's process before it starts.
#[derive(Clone)]
pub struct SyscallFilter(pub Arc<seccompiler::BpfProgram>);

impl std::fmt::Debug for SyscallFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyscallFilter({} instructions)", self.0.len())
    }
}

fn config_text(dir: &Path, o: &Options) -> String {
    let sock = if o.unix_socket {
        format!("unix_socket = \"{}\"\n", dir.join("herald.sock").display())
    } else {
        String::new()
    };
    let allow = if o.no_loopback {
        ""
    } else {
        "allow_networks = [\"127.0.0.0/8\"]\n"
    };
    let auth = if o.auth.is_empty() {
        format!("admin_tokens = [\"{ADMIN_TOKEN}\"]\n")
    } else {
        o.auth.clone()
    };
    // A test may set its own drain timeout; a key may not repeat in a table.
    let drain = if o.server.contains("drain_timeout") {
        ""
    } else {
        "drain_timeout = \"5s\"\n"
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{sock}{drain}{}\n\
         [storage]\npath = \"{}\"\n{}\n\
         [auth]\n{auth}\n\
         [ingest]\n{}\n\
         [delivery]\n{allow}timeout = \"5s\"\nconnect_timeout = \"2s\"\nretry_schedule = [\"100ms\", \"100ms\"]\nretry_jitter = 0.0\n{}\n\
         [log]\nlevel = \"info,herald=debug\"\n",
        o.server,
        dir.join("data").display(),
        if o.storage.contains("min_free_bytes") {
            o.storage.clone()
        } else {
            format!("min_free_bytes = 0\n{}", o.storage)
        },
        o.ingest,
        o.delivery,
    )
}

impl Herald {
    pub async fn start() -> Herald {
        Herald::start_with(Options::default()).await
    }

    pub async fn start_with(o: Options) -> Herald {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let config = config_text(dir.path(), &o);
        Herald::launch(dir, config, o.open_files, o.syscall_filter).await
    }

    /// Starts again on the same data directory and config (after a kill or a clean stop).
    pub async fn restart(mut self) -> Herald {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (dir, config) = (self.dir.clone(), self.config.clone());
        let (open_files, filter) = (self.open_files, self.syscall_filter.clone());
        drop(self);
        Herald::launch(dir, config, open_files, filter).await
    }

    async fn launch(
        dir: Arc<tempfile::TempDir>,
        config: String,
        open_files: Option<u64>,
        syscall_filter: Option<SyscallFilter>,
    ) -> Herald {
        let cfg_path = dir.path().join("herald.toml");
        std::fs::write(&cfg_path, &config).unwrap();
        let notify_path = dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_nonblocking(true).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("herald.log"))
            .unwrap();
        let mut command = match open_files {
            Some(n) => {
                // `ulimit -n` in a POSIX shell sets the soft and the hard limit.
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_herald"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_herald")),
        };
        if let Some(SyscallFilter(program)) = syscall_filter.clone() {
            // SAFETY: between fork and exec the closure only makes two system calls (prctl and
            // seccomp) on a program compiled before the fork; it allocates only on error.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    seccompiler::apply_filter(&program).map_err(std::io::Error::other)
                });
            }
        }
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("herald binary starts");
        let mut h = Herald {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            socket: None,
            dir,
            config,
            open_files,
            syscall_filter,
            notify,
            notices: Vec::new(),
        };
        let status = h.wait_notice("READY=1", Duration::from_secs(60)).await;
        for part in status.split_whitespace() {
            if let Some(a) = part.strip_prefix("http=") {
                h.addr = a.parse().unwrap();
            }
            if let Some(p) = part.strip_prefix("unix=") {
                h.socket = Some(PathBuf::from(p));
            }
        }
        h
    }

    /// Waits for a notify datagram containing `what`; returns its STATUS line (if any).
    pub async fn wait_notice(&mut self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            // Read everything already sent before judging (the daemon may have exited since).
            while let Ok(n) = self.notify.recv(&mut buf) {
                self.notices
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            if let Some(n) = self.notices.iter().find(|n| n.contains(what)) {
                return status_of(n);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "herald exited with {status} before {what}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} from herald within {within:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("herald.log")).unwrap_or_default()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits (bounded) for the daemon to exit on its own; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.exit_within(within, "").await
    }

    /// `SIGTERM`, then waits (bounded) for the exit status.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.exit_within(within, " of SIGTERM").await
    }

    /// The exit status, once there is one; panics with the log after `within`.
    async fn exit_within(&mut self, within: Duration, after: &str) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "herald did not exit within {within:?}{after}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One request over TCP. `token`: the bearer token to send, if any.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
        token: Option<&str>,
    ) -> Answer {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        send(
            TokioIo::new(stream),
            method,
            path,
            content_type,
            body.into(),
            token,
        )
        .await
    }

    /// One request over the unix socket.
    pub async fn request_unix(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
        token: Option<&str>,
    ) -> Answer {
        let sock = self.socket.as_ref().expect("started with a unix socket");
        let stream = tokio::net::UnixStream::connect(sock).await.unwrap();
        send(
            TokioIo::new(stream),
            method,
            path,
            content_type,
            body.into(),
            token,
        )
        .await
    }

    /// Management call with the admin token and a JSON body.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let (ct, bytes) = match body {
            Some(v) => (Some("application/json"), Bytes::from(v.to_string())),
            None => (None, Bytes::new()),
        };
        self.request(method, path, ct, bytes, Some(ADMIN_TOKEN))
            .await
    }

    /// Creates a subscription, asserting `201`; returns its id.
    pub async fn subscribe(&self, body: Value) -> String {
        let a = self.api("POST", "/v1/subscriptions", Some(body)).await;
        assert_eq!(a.status, 201, "create subscription: {}", a.text());
        a.json()["id"].as_str().unwrap().to_string()
    }

    /// Posts to an ingest endpoint, asserting `202`; returns the body.
    pub async fn ingest(&self, path: &str, content_type: &str, body: impl Into<Bytes>) -> Value {
        let a = self
            .request("POST", path, Some(content_type), body, None)
            .await;
        assert_eq!(a.status, 202, "ingest {path}: {}", a.text());
        a.json()
    }

    /// The value of one metric sample, `name{labels}` exactly as rendered (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.request("GET", "/metrics", None, "", None).await.text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    /// Waits until `sample` reaches at least `want`.
    pub async fn wait_metric(&self, sample: &str, want: f64, within: Duration) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let v = self.metric(sample).await;
            if v >= want {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{sample} = {v}, wanted >= {want} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_of(notice: &str) -> String {
    notice
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or("")
        .to_string()
}

async fn send<I>(
    io: I,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
    token: Option<&str>,
) -> Answer
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "herald");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Polls `f` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
