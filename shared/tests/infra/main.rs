//! The real infrastructure production runs on, started by the tests themselves
//! (testkit's cluster, pgbouncer and certs helpers): verified TLS to a cluster of
//! our own, PgBouncer in transaction mode as RDS Proxy, a real restart under load,
//! a password rotated under a warm container. One test binary for them all, to
//! link once. A missing binary (initdb, pg_ctl,
//! pgbouncer) skips its test with a SKIPPED line, or fails it in CI
//! (INFRA_TESTS=required).

mod pgbouncer;
mod restart;
mod rotation;
mod tls;
