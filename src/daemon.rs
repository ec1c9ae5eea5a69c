//! The daemon: builds every stage from a validated `Config`, wires them, serves, and shuts down.
//!
//! Start-up order is the recovery order: open the journal, read back what it holds, rebuild the
//! subscription index and the dispatcher's endpoints (marking backlogs as on-disk rather than
//! loading them), and only then serve and tell systemd READY — so nothing is accepted before
//! Herald knows what it owes. Shutdown is the reverse: stop accepting (STOPPING, `/readyz` fails),
//! let open requests finish, give in-flight attempts up to `[server] drain_timeout`, then make
//! the journal durable and exit. Anything not finished stays queued on disk for the next start.
//! A journal that can no longer write (`Journal::lost`) starts the same shutdown, and `run`
//! then returns an error, so that the process exits 1 and its supervisor restarts it.
//!
//! Listeners and the shutdown signal are parameters (mini-redis's `server::run`), so tests and
//! `main` drive the same code.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::api::App;
use crate::config::Config;
use crate::decode;
use crate::deliver::Client;
use crate::deliver::dispatch::{DispatchConfig, Dispatcher};
use crate::fds;
use crate::ingest::accept::Ingest;
use crate::ingest::server::{self, Listeners};
use crate::journal::Journal;
use crate::journal::embedded::EmbeddedJournal;
use crate::model::SeqGen;
use crate::render::RenderDefaults;
use crate::route::store::Subscriptions;
use crate::telemetry::metrics as m;

/// Resolves on `SIGTERM` or `SIGINT`.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; draining"),
        _ = int.recv() => tracing::info!("SIGINT received; draining"),
    }
}

/// Sends a state to systemd when running under it (a no-op otherwise).
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Raises the open-file limit and fits the connection limits and the store's cached files into
/// it (`crate::fds`).
fn fit_descriptors(config: &mut Config) -> anyhow::Result<()> {
    let limit = fds::raise_limit();
    let (server, delivery) = (
        config.server.max_connections,
        config.delivery.max_connections,
    );
    let plan = fds::plan(limit, server, delivery, config.storage.cached_files)?;
    if plan.shrunk {
        tracing::warn!(
            open_file_limit = limit,
            server_max_connections = plan.server,
            delivery_max_connections = plan.delivery,
            store_cached_files = plan.store_files,
            configured_server = server,
            configured_delivery = delivery,
            "the open-file limit cannot hold the configured connection limits and the store's \
             files; using lower limits (raise LimitNOFILE to keep them)"
        );
    } else {
        tracing::debug!(open_file_limit = limit, "file descriptors fit");
    }
    config.server.max_connections = plan.server;
    config.delivery.max_connections = plan.delivery;
    config.storage.cached_files = plan.store_files;
    Ok(())
}

/// Runs Herald until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut config = config;
    fit_descriptors(&mut config)?;
    std::fs::create_dir_all(&config.storage.path).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.storage.path.display()
        )
    })?;
    let storage = config.storage.clone();
    let dedup = config.ingest.dedup_window;
    let journal: Arc<dyn Journal> = Arc::new(
        tokio::task::spawn_blocking(move || EmbeddedJournal::open(&storage, dedup))
            .await?
            .with_context(|| {
                format!(
                    "cannot open the journal in {}",
                    config.storage.path.display()
                )
            })?,
    );
    let j = journal.clone();
    let recovered = tokio::task::spawn_blocking(move || j.recover())
        .await?
        .context("cannot read the journal back")?;
    let ids = Arc::new(SeqGen::new());
    ids.observe(recovered.max_id);
    let pending: u64 = recovered.queued.iter().map(|(_, n)| n).sum();
    metrics::gauge!(m::PENDING_DELIVERIES).set(pending as f64);
    metrics::gauge!(m::RETRY_QUEUE_DEPTH).set(recovered.retrying as f64);

    let defaults = RenderDefaults {
        user_agent: http::HeaderValue::from_str(&config.delivery.user_agent)
            .context("[delivery] user_agent is not a valid header value")?,
    };
    let sub_count = recovered.subscriptions.len();
    let subs = Arc::new(Subscriptions::load(
        journal.clone(),
        recovered.subscriptions,
        defaults,
    ));
    // Loading freed hundreds of megabytes at a million subscriptions (the decoded list and the
    // copies it grew through); hand them back to the OS now rather than whenever mimalloc next
    // gets round to purging, which an idle daemon may never do (issue 5). A no-op when mimalloc
    // is not the global allocator (unit tests).
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let client = Client::new(&config.delivery).context("cannot build the HTTP client")?;
    let dispatcher = Dispatcher::new(
        DispatchConfig {
            delivery: config.delivery.clone(),
            memory_window: config.storage.memory_window,
            memory_budget: config.storage.memory_budget,
        },
        journal.clone(),
        client,
        subs.clone(),
    );
    dispatcher.resume(&recovered.queued);
    tracing::info!(
        subscriptions = sub_count,
        pending,
        retrying = recovered.retrying,
        dead_letters = recovered.dead_letters,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "journal recovered"
    );

    let ingest = Ingest {
        limits: decode::Limits {
            max_batch_items: config.server.max_batch_items,
            max_json_depth: config.server.max_json_depth,
        },
        max_body_bytes: config.server.max_body_bytes,
        tokens: config.auth.ingest_tokens.clone(),
        journal: journal.clone(),
        subs: subs.clone(),
        dispatcher: dispatcher.clone(),
        ids,
    };
    let app = Arc::new(App::new(
        ingest,
        subs,
        journal.clone(),
        dispatcher.clone(),
        metrics.clone(),
        &config.auth,
        config.server.max_body_bytes,
    ));

    let mut where_ = Vec::new();
    if let Some(a) = listeners.tcp_addr() {
        where_.push(format!("http={a}"));
    }
    if let Some(p) = listeners.unix_path() {
        where_.push(format!("unix={}", p.display()));
    }
    let where_ = where_.join(" ");

    // Housekeeping: histogram upkeep for the exporter, watchdog pings for systemd.
    let upkeep = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        })
    };
    let watchdog = sd_notify::watchdog_enabled().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tick.tick().await;
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        })
    });

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listeners,
        app.clone(),
        config.server.header_read_timeout,
        config.server.max_connections,
        config.server.drain_timeout,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let status = format!("ready; {where_}");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    tracing::info!(listen = %where_, version = env!("CARGO_PKG_VERSION"), "herald is ready");

    // Runs until asked to stop, or until the journal is lost for good: then Herald drains as
    // on SIGTERM and exits with an error, so that its supervisor (systemd's
    // `Restart=on-failure`) restarts it and it recovers from what is on disk, which is fjall's
    // documented way out of a poisoned store. Staying up would answer `503` to every event.
    let lost = tokio::select! {
        () = shutdown => None,
        why = journal_lost(journal.clone()) => {
            tracing::error!(
                reason = %why,
                "the journal cannot write any more: draining, then exiting so that the \
                 supervisor restarts Herald"
            );
            Some(why)
        }
    };

    // Drain: stop accepting, let requests finish, give attempts their deadline, sync.
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("draining"),
    ]);
    app.draining.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + config.server.drain_timeout;
    let _ = stop_tx.send(());
    let _ = server.await;
    let left = dispatcher
        .drain(deadline.saturating_duration_since(Instant::now()))
        .await;
    if left > 0 {
        tracing::warn!(
            in_flight = left,
            "drain deadline reached; unfinished attempts stay queued for the next start"
        );
    }
    match journal.flush().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "final journal sync failed"),
        Err(_) => tracing::error!("journal writer stopped before the final sync"),
    }
    journal.close();
    upkeep.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(why) = lost {
        anyhow::bail!("the journal cannot write any more: {why}");
    }
    tracing::info!("herald stopped");
    Ok(())
}

/// Resolves with the reason once the journal is lost ([`Journal::lost`]), looking every
/// [`LOST_CHECK_EVERY`].
async fn journal_lost(journal: Arc<dyn Journal>) -> String {
    let mut tick = tokio::time::interval(LOST_CHECK_EVERY);
    loop {
        tick.tick().await;
        if let Some(why) = journal.lost() {
            return why;
        }
    }
}

/// How often the daemon asks whether the journal is lost: a second of `503`s at most before
/// the drain starts.
const LOST_CHECK_EVERY: Duration = Duration::from_secs(1);
