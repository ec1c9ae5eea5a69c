//! A capture receiver: a real HTTP server on port 0 that records every request and answers as
//! the test scripts it (status, headers, delay, dropped connection), so delivery tests assert on
//! exactly what arrived.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
    /// Close the connection without answering.
    pub drop: bool,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
            drop: false,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

struct State {
    captured: Vec<Captured>,
    script: VecDeque<Reply>,
    default: Reply,
    /// Answer every n-th request with a 500 (0: never).
    fail_every: usize,
    /// Requests received and not yet answered, and the most there ever were.
    open: usize,
    most_open: usize,
}

/// The receiver. Dropping it stops the server.
#[derive(Clone)]
pub struct Capture {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl Capture {
    /// Starts a receiver that answers `200` unless scripted otherwise.
    pub async fn start() -> Capture {
        Capture::with_default(Reply::status(200)).await
    }

    pub async fn with_default(default: Reply) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            captured: Vec::new(),
            script: VecDeque::new(),
            default,
            fail_every: 0,
            open: 0,
            most_open: 0,
        }));
        let arrived = Arc::new(Notify::new());
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (st, ar) = (state.clone(), arrived.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = &mut stop_rx => return,
                };
                let (st, ar) = (st.clone(), ar.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<Incoming>| {
                        let (st, ar) = (st.clone(), ar.clone());
                        async move { Ok::<_, Infallible>(answer(req, st, ar).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Capture {
            addr,
            state,
            arrived,
            _stop: Arc::new(stop_tx),
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers the next requests with these replies, in order, then the default again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Fails a share of requests: every `n`-th gets a `500`.
    pub fn fail_every(&self, n: usize) {
        self.state.lock().unwrap().fail_every = n;
    }

    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = reply;
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.state.lock().unwrap().captured.clone()
    }

    /// The most requests this receiver held unanswered at one time.
    pub fn most_concurrent(&self) -> usize {
        self.state.lock().unwrap().most_open
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().captured.len()
    }

    /// Waits until at least `n` requests arrived (panics after `within`) and returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Captured> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.captured();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let got = self.captured();
                assert!(
                    got.len() >= n,
                    "expected {n} requests within {within:?}, got {}: {:#?}",
                    got.len(),
                    got.iter().map(|c| (&c.method, &c.path)).collect::<Vec<_>>()
                );
                return got;
            }
        }
    }
}

async fn answer(
    req: http::Request<Incoming>,
    st: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let reply = {
        let mut s = st.lock().unwrap();
        s.captured.push(Captured {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers,
            body,
            at: Instant::now(),
        });
        let n = s.captured.len();
        s.open += 1;
        s.most_open = s.most_open.max(s.open);
        match s.script.pop_front() {
            Some(r) => r,
            None if s.fail_every > 0 && n.is_multiple_of(s.fail_every) => Reply::status(500),
            None => s.default.clone(),
        }
    };
    arrived.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if reply.drop {
        // Never answer: the connection task is dropped with the server's connection.
        std::future::pending::<()>().await;
    }
    st.lock().unwrap().open -= 1;
    let mut resp = http::Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}
