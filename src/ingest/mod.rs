//! Ingest: the listeners (TCP and unix socket, one HTTP API on both) and the path an event takes
//! from an HTTP body to a durable, routed event: auth, body limits, decode, route, journal, `202`.

pub mod accept;
pub mod server;
