//! Integration tests: the real `herald` binary over real sockets, with a capture receiver.
//! One file per flow; helpers in `support`.

mod support;

mod connections;
mod contensis;
mod datocms;
mod delivery;
mod durability;
mod ingest;
mod operations;
mod sitecore_audit;
mod subscriptions;
