//! Herald as a child process: a generated config, the release binary, READY through a fake
//! systemd notify socket, and what `/proc` says about it.
//!
//! Where it sits: each scenario starts its own Herald on a fresh data directory (so no backlog
//! or subscription leaks from one scenario into the next), feeds it, reads its CPU time and peak
//! RSS from `/proc/<pid>`, and stops it. The bound addresses come from the `STATUS=` of the
//! READY notification, exactly as under systemd (and as `tests/it/support/daemon.rs` does), so
//! the config can listen on port 0 and the time to READY is the start-up time systemd sees.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::load::{self, Target};

/// What differs between the scenarios' configs.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// `[storage] fsync`: `batch` or `never`.
    pub fsync: &'static str,
    /// `[server] worker_threads`.
    pub workers: usize,
    /// `[delivery] max_in_flight_per_endpoint`; `None` keeps Herald's default.
    pub in_flight: Option<usize>,
    /// `[delivery] timeout`.
    pub timeout: &'static str,
    /// `[delivery] retry_schedule`, as TOML.
    pub retry_schedule: &'static str,
    /// `[delivery] pool_max_idle_per_origin`; `None` keeps Herald's default.
    pub pool_idle: Option<usize>,
    /// `[storage] queue_write_after`; `None` keeps Herald's default.
    pub queue_write_after: Option<&'a str>,
}

/// The config file for a Herald whose files live in `dir`.
pub fn config_text(dir: &Path, s: &Settings<'_>) -> String {
    format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         unix_socket = \"{sock}\"\n\
         worker_threads = {workers}\n\
         drain_timeout = \"2s\"\n\
         max_batch_items = 10000\n\
         [storage]\n\
         path = \"{data}\"\n\
         fsync = \"{fsync}\"\n\
         min_free_bytes = 0\n\
         {write_after}\
         [delivery]\n\
         allow_networks = [\"127.0.0.0/8\"]\n\
         {in_flight}\
         timeout = \"{timeout}\"\n\
         connect_timeout = \"2s\"\n\
         retry_schedule = {retry}\n\
         retry_jitter = 0.0\n\
         {pool}\
         [log]\n\
         level = \"warn,herald::daemon=info\"\n",
        sock = dir.join("herald.sock").display(),
        workers = s.workers,
        data = dir.join("data").display(),
        fsync = s.fsync,
        in_flight = s
            .in_flight
            .map(|n| format!("max_in_flight_per_endpoint = {n}\n"))
            .unwrap_or_default(),
        timeout = s.timeout,
        retry = s.retry_schedule,
        pool = s
            .pool_idle
            .map(|n| format!("pool_max_idle_per_origin = {n}\n"))
            .unwrap_or_default(),
        write_after = s
            .queue_write_after
            .map(|d| format!("queue_write_after = \"{d}\"\n"))
            .unwrap_or_default(),
    )
}

/// CPU time and memory of a process, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU, seconds.
    pub cpu_s: f64,
    /// `VmRSS`, bytes.
    pub rss: u64,
    /// `VmHWM` (peak RSS), bytes.
    pub hwm: u64,
    /// User + system CPU of the store's background threads (fjall's `fjall:worker`, flushing
    /// and compacting, and Herald's `herald-reaper`, freeing flushed memtables), seconds.
    pub store_bg_cpu_s: f64,
}

/// Threads whose CPU is the store's background work.
const STORE_BG_THREADS: [&str; 2] = ["fjall:worker", "herald-reaper"];

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on every Linux this
/// runs on, used when `getconf` is missing).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Reads a process's CPU time and memory (zeros for what cannot be read).
pub fn proc_stats(pid: u32, ticks: f64) -> ProcStats {
    let mut out = ProcStats::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        out.cpu_s = stat_cpu_s(&stat, ticks);
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if STORE_BG_THREADS.contains(&comm.trim_end()) {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                out.store_bg_cpu_s += stat_cpu_s(&stat, ticks);
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |k| k * 1024)
        };
        out.rss = kb("VmRSS:");
        out.hwm = kb("VmHWM:");
    }
    out
}

/// Threads sampled for the stall report, by name (tokio's blocking threads share the workers').
const SAMPLED_THREADS: [&str; 5] = [
    "herald-worker",
    "herald-journal",
    "herald-sync",
    "fjall:worker",
    "herald-reaper",
];

/// Samples the run time of a process's named threads (`/proc/<pid>/task/<tid>/schedstat`,
/// nanoseconds) every `every` until stopped: what ran around a latency stall.
pub struct ThreadSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Sample>>,
}

/// One look at the sampled threads: when (seconds since the epoch), each group's cumulative
/// run time (ns), and how many of its threads were blocked in the kernel (`D`) or waiting to run.
struct Sample {
    at: f64,
    run_ns: [u64; SAMPLED_THREADS.len()],
    /// The machine and the two processes, cumulative: see [`Machine`].
    machine: Machine,
    blocked: [u32; SAMPLED_THREADS.len()],
    runnable: [u32; SAMPLED_THREADS.len()],
}

/// What a span's threads did: run time (ms) per group, and, over the span's samples, how many
/// times a thread of the group was found blocked in the kernel or runnable (waiting for or on a
/// CPU).
pub struct SpanThreads {
    pub run_ms: Vec<(&'static str, f64)>,
    /// What the whole machine did over the span (ms of CPU): all of Herald's threads, the
    /// bench's own (sink, feeders, this sampler), everything else that ran, and the time the
    /// hypervisor ran something else on the box's virtual CPUs (steal).
    pub herald_ms: f64,
    pub bench_ms: f64,
    pub others_ms: f64,
    pub steal_ms: f64,
    pub blocked: Vec<(&'static str, u32)>,
    pub runnable: Vec<(&'static str, u32)>,
}

impl ThreadSampler {
    /// Starts sampling `pid`; sample times are seconds since `epoch`.
    pub fn start(pid: u32, epoch: Instant, every: Duration) -> ThreadSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let tick_ns = 1e9 / clock_ticks();
            // tid → index in SAMPLED_THREADS, read once per thread (tids are not reused
            // within a run of this length).
            let mut known: std::collections::HashMap<String, Option<usize>> = Default::default();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let mut run_ns = [0u64; SAMPLED_THREADS.len()];
                let mut blocked = [0u32; SAMPLED_THREADS.len()];
                let mut runnable = [0u32; SAMPLED_THREADS.len()];
                let mut herald_ns = 0;
                if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                    for task in tasks.flatten() {
                        let ns = schedstat_ns(&task.path());
                        herald_ns += ns;
                        let tid = task.file_name().to_string_lossy().into_owned();
                        let slot = *known.entry(tid).or_insert_with(|| {
                            let comm = std::fs::read_to_string(task.path().join("comm"))
                                .unwrap_or_default();
                            SAMPLED_THREADS.iter().position(|n| *n == comm.trim_end())
                        });
                        let Some(slot) = slot else { continue };
                        run_ns[slot] += ns;
                        let stat =
                            std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                        match after_comm(&stat).and_then(|r| r.chars().next()) {
                            Some('D') => blocked[slot] += 1,
                            Some('R') => runnable[slot] += 1,
                            _ => {}
                        }
                    }
                }
                samples.push(Sample {
                    at: epoch.elapsed().as_secs_f64(),
                    run_ns,
                    machine: Machine::read(herald_ns, tick_ns),
                    blocked,
                    runnable,
                });
                std::thread::sleep(every);
            }
            samples
        });
        ThreadSampler { stop, thread }
    }

    /// Stops and returns, per span `(from_ms, to_ms)` since the epoch, what the sampled
    /// threads did over `[from − lead, to]` (only the groups that ran, or were seen blocked or
    /// runnable).
    pub fn finish(self, spans: &[(u64, u64)], lead_ms: u64) -> Vec<SpanThreads> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        // The cumulative figures at `t` seconds: the last sample at or before it.
        let sample_at = |t: f64| {
            samples
                .iter()
                .take_while(|s| s.at <= t)
                .last()
                .or(samples.first())
        };
        let run_at = |t: f64| sample_at(t).map_or([0; SAMPLED_THREADS.len()], |s| s.run_ns);
        let machine_at = |t: f64| sample_at(t).map_or(Machine::default(), |s| s.machine);
        spans
            .iter()
            .map(|&(from, to)| {
                let (t0, t1) = (
                    from.saturating_sub(lead_ms) as f64 / 1000.0,
                    to as f64 / 1000.0,
                );
                let (a, b) = (run_at(t0), run_at(t1));
                let (ma, mb) = (machine_at(t0), machine_at(t1));
                let ms = |f: fn(&Machine) -> u64| f(&mb).saturating_sub(f(&ma)) as f64 / 1e6;
                let (herald_ms, bench_ms) = (ms(|m| m.herald_ns), ms(|m| m.bench_ns));
                let inside = || samples.iter().filter(move |s| s.at >= t0 && s.at <= t1);
                let count = |pick: fn(&Sample) -> &[u32; SAMPLED_THREADS.len()]| {
                    SAMPLED_THREADS
                        .iter()
                        .enumerate()
                        .map(|(i, name)| (*name, inside().map(|s| pick(s)[i]).sum::<u32>()))
                        .filter(|(_, n)| *n > 0)
                        .collect()
                };
                SpanThreads {
                    run_ms: SAMPLED_THREADS
                        .iter()
                        .enumerate()
                        .map(|(i, name)| (*name, b[i].saturating_sub(a[i]) as f64 / 1e6))
                        .filter(|(_, ms)| *ms > 0.0)
                        .collect(),
                    herald_ms,
                    bench_ms,
                    others_ms: (ms(|m| m.busy_ns) - herald_ms - bench_ms).max(0.0),
                    steal_ms: ms(|m| m.steal_ns),
                    blocked: count(|s| &s.blocked),
                    runnable: count(|s| &s.runnable),
                }
            })
            .collect()
    }
}

/// Cumulative CPU time (ns) of the machine and of the two processes at one sample. `/proc/stat`
/// counts in clock ticks (10 ms), so `busy_ns` and `steal_ns` are only as fine as that; the
/// processes' figures sum their threads' `schedstat` (ns).
#[derive(Clone, Copy, Default)]
struct Machine {
    /// Every CPU's time not idle and not waiting for I/O (user, nice, system, irq, softirq).
    busy_ns: u64,
    /// Time the hypervisor gave the box's virtual CPUs to something else.
    steal_ns: u64,
    herald_ns: u64,
    bench_ns: u64,
}

impl Machine {
    /// The machine now, with Herald's threads' summed run time as the sampler just read it.
    fn read(herald_ns: u64, tick_ns: f64) -> Machine {
        let at = cpu_ticks();
        let ns = |t: u64| (t as f64 * tick_ns) as u64;
        Machine {
            busy_ns: ns(at[USER] + at[NICE] + at[SYSTEM] + at[IRQ] + at[SOFTIRQ]),
            steal_ns: ns(at[STEAL]),
            herald_ns,
            bench_ns: std::fs::read_dir("/proc/self/task").map_or(0, |tasks| {
                tasks.flatten().map(|t| schedstat_ns(&t.path())).sum()
            }),
        }
    }
}

/// A thread's run time so far (ns, the first field of its `schedstat`; 0 if unreadable).
fn schedstat_ns(task: &Path) -> u64 {
    std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Fields of `/proc/stat`'s `cpu` line (clock ticks, all CPUs together).
const USER: usize = 0;
const NICE: usize = 1;
const SYSTEM: usize = 2;
const IRQ: usize = 5;
const SOFTIRQ: usize = 6;
const STEAL: usize = 7;

/// `/proc/stat`'s `cpu` line: user, nice, system, idle, iowait, irq, softirq, steal (zeros
/// where it cannot be read).
fn cpu_ticks() -> [u64; 8] {
    let mut out = [0; 8];
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        let fields = stat.lines().next().unwrap_or_default().split_whitespace();
        for (o, v) in out.iter_mut().zip(fields.skip(1)) {
            *o = v.parse().unwrap_or(0);
        }
    }
    out
}

/// Seconds the hypervisor gave this box's virtual CPUs to something else, all CPUs together,
/// since boot (`/proc/stat`'s `steal`; 0 where it cannot be read or on bare metal).
pub fn steal_s(ticks: f64) -> f64 {
    cpu_ticks()[STEAL] as f64 / ticks
}

/// User + system CPU seconds of a `/proc/.../stat` line (0 if it cannot be read).
fn stat_cpu_s(stat: &str, ticks: f64) -> f64 {
    let Some(rest) = after_comm(stat) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / ticks
}

/// The fields of a `/proc/.../stat` line after the command name, from field 3 (the state) on:
/// the name (field 2) may hold spaces and parentheses, the fields after its last `)` are plain.
fn after_comm(stat: &str) -> Option<&str> {
    stat.rsplit_once(')').map(|(_, rest)| rest.trim_start())
}

/// `text` without ANSI escape sequences (Herald's human log format colours its fields even
/// when stderr is a file).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `perf record` attached to a process, with DWARF call graphs (release builds here keep line
/// tables but no frame pointers). Stopped with SIGINT, as perf expects.
pub struct Perf {
    child: Child,
    pub out: PathBuf,
}

impl Perf {
    /// Starts recording `pid` into `out`; `None` (and a note on stderr) when perf cannot run.
    pub fn start(pid: u32, out: &Path) -> Option<Perf> {
        if let Some(dir) = out.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let child = Command::new("perf")
            .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => Some(Perf {
                child,
                out: out.to_path_buf(),
            }),
            Err(e) => {
                eprintln!("e2e: perf record did not start: {e}");
                None
            }
        }
    }

    /// Stops recording and waits for perf to write its file.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        eprintln!("e2e: perf data in {}", self.out.display());
    }
}

/// A running Herald.
pub struct Herald {
    child: Child,
    pub tcp: SocketAddr,
    pub unix: PathBuf,
    pub dir: PathBuf,
    /// Spawn to READY.
    pub started_in: Duration,
    notify: UnixDatagram,
}

impl Herald {
    /// Writes `config` into `dir` and starts `bin` on it; returns once Herald said READY. With
    /// `perf`, the start-up (spawn to READY) is recorded into that file.
    pub async fn launch(
        bin: &Path,
        dir: &Path,
        config: &str,
        within: Duration,
        perf: Option<&Path>,
    ) -> anyhow::Result<Herald> {
        Self::launch_wrapped(bin, dir, config, within, perf, &[]).await
    }

    /// [`Herald::launch`] under a wrapper command (`valgrind --tool=callgrind …`): the
    /// wrapper's argv, then `bin` and Herald's own arguments.
    pub async fn launch_wrapped(
        bin: &Path,
        dir: &Path,
        config: &str,
        within: Duration,
        perf: Option<&Path>,
        wrapper: &[String],
    ) -> anyhow::Result<Herald> {
        let cfg_path = dir.join("herald.toml");
        std::fs::write(&cfg_path, config)?;
        let notify_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_nonblocking(true)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("herald.log"))?;
        let spawned = Instant::now();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut h = Herald {
            child,
            tcp: "127.0.0.1:0".parse()?,
            unix: PathBuf::new(),
            dir: dir.to_path_buf(),
            started_in: Duration::ZERO,
            notify,
        };
        let recording = perf.and_then(|out| Perf::start(h.pid(), out));
        let status = h.wait_ready(within).await;
        h.started_in = spawned.elapsed();
        if let Some(p) = recording {
            p.stop();
        }
        let status = status?;
        for part in status.split_whitespace() {
            if let Some(a) = part.strip_prefix("http=") {
                h.tcp = a.parse().context("READY status address")?;
            }
            if let Some(p) = part.strip_prefix("unix=") {
                h.unix = PathBuf::from(p);
            }
        }
        if h.tcp.port() == 0 || h.unix.as_os_str().is_empty() {
            bail!("READY did not name both listeners: {status:?}");
        }
        Ok(h)
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            while let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.lines().any(|l| l == "READY=1") {
                    let status = msg
                        .lines()
                        .find_map(|l| l.strip_prefix("STATUS="))
                        .unwrap_or("")
                        .to_string();
                    return Ok(status);
                }
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "herald exited with {status} before READY; log:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "no READY from herald within {within:?}; log:\n{}",
                    self.log_tail()
                );
            }
            // 1 ms polling: the start-up time is read to the millisecond.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stats(&self, ticks: f64) -> ProcStats {
        proc_stats(self.pid(), ticks)
    }

    /// The last lines of Herald's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("herald.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The `elapsed_ms` of the "journal recovered" log line (open + recover + index build).
    pub fn recovered_ms(&self) -> Option<u64> {
        let text = strip_ansi(&std::fs::read_to_string(self.dir.join("herald.log")).ok()?);
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("journal recovered"))?;
        let at = line.find("elapsed_ms=")? + "elapsed_ms=".len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    /// Feeder targets: `n` connections, alternating unix socket and TCP (unix first) or only
    /// one of them.
    pub fn targets(&self, n: usize, transport: &str) -> Vec<Target> {
        (0..n)
            .map(|i| match transport {
                "tcp" => Target::Tcp(self.tcp),
                "unix" => Target::Unix(self.unix.clone()),
                _ if i % 2 == 0 => Target::Unix(self.unix.clone()),
                _ => Target::Tcp(self.tcp),
            })
            .collect()
    }

    /// One request on a fresh TCP connection.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut s = load::connect(&Target::Tcp(self.tcp)).await?;
        let ct = body.as_ref().map(|_| "application/json");
        load::send(&mut s, method, path, ct, body.unwrap_or_default()).await
    }

    /// The sum of every sample of a metric whose name and labels start with `prefix`
    /// (`herald_deliveries_total{outcome="delivered"}`, or a bare name for all its series).
    pub async fn metric(&self, prefix: &str) -> anyhow::Result<f64> {
        let (_, text) = self.request("GET", "/metrics", None).await?;
        let text = String::from_utf8_lossy(&text);
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
            .filter(|l| {
                // `herald_x` must not also pick `herald_x_total`.
                let rest = &l[prefix.len()..];
                rest.starts_with(' ') || rest.starts_with('{') || prefix.ends_with('}')
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum())
    }

    /// Every series of a metric: `(labels, value)`, labels as rendered (`class="2xx"`).
    pub async fn series(&self, name: &str) -> anyhow::Result<Vec<(String, f64)>> {
        let (_, text) = self.request("GET", "/metrics", None).await?;
        let text = String::from_utf8_lossy(&text);
        Ok(text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let (labels, value) = rest.rsplit_once(' ')?;
                let labels = labels.strip_prefix('{')?.strip_suffix('}')?;
                Some((labels.to_string(), value.parse().ok()?))
            })
            .collect())
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `SIGTERM`, then `kill -9` if it has not exited within `within`.
    pub async fn stop(mut self, within: Duration) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill9();
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        // Never leave a daemon behind, whatever path the bench took out.
        self.kill9();
    }
}
