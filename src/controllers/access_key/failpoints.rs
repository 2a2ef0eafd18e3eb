//! Test-only failpoints: `IAMWRIGHT_FAILPOINT=<name>` makes the process exit (code 3)
//! at a step — `after-create-access-key` (between CreateAccessKey and the Secret
//! write), `after-verify` (between the key's verification and the Secret write),
//! `after-secret-write` (between the Secret write and the status record),
//! `after-set-console-password` (between setting a console password and delivering
//! it) — or fails one: `fail-secret-write` (the Secret write returns an error). Unset
//! in production; they exist so the e2e suite can prove crash safety on a real process.

pub fn failpoint(name: &str) -> bool {
    std::env::var("IAMWRIGHT_FAILPOINT").is_ok_and(|v| v == name)
}

pub fn crash_point(name: &str) {
    if failpoint(name) {
        tracing::warn!(failpoint = name, "failpoint reached: exiting");
        std::process::exit(3);
    }
}
