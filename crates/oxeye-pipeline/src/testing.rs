//! Helpers for tests that check no secret reaches the disk: the seeds' example inputs with the raw secrets they
//! hold, and a recursive byte search over a data directory.
//!
//! The end-to-end test feeds [`SEED_EXAMPLES`] through every ingest path, stops or flushes the server, then
//! asserts that [`find_secrets_on_disk`] over its data directory returns nothing. Note that a search of raw bytes
//! only proves something about files that store text uncompressed (the WAL's records); compressed chunks must be
//! read back through the store, or the test must compare with a run where redaction is disabled and the secret
//! is found.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One example input from the seeds and the captured payloads.
#[derive(Debug, Clone, Copy)]
pub struct SeedExample {
    /// A short name for failure messages.
    pub name: &'static str,
    /// The log line as the application sent it.
    pub line: &'static str,
    /// Raw secrets in `line` that must not survive redaction.
    pub secrets: &'static [&'static str],
    /// Values in `line` that must survive (e.g. the `email` field kept for correlation).
    pub kept: &'static [&'static str],
}

/// Example lines shaped like the seeds' structlog JSON, their logfmt and plain-text equivalents, and the
/// captured boxoffice payloads (`loki_api_v1_push.login.json`, `loki_api_v1_push.error.json`).
pub const SEED_EXAMPLES: &[SeedExample] = &[
    SeedExample {
        name: "structlog login_attempt (seed 000)",
        line: r#"{"event": "login_attempt", "email": "user@example.com", "password": "hunter2-seed-000"}"#,
        secrets: &["hunter2-seed-000"],
        kept: &["user@example.com"],
    },
    SeedExample {
        name: "captured loki login line",
        line: r#"{"email": "ann.buyer+88d89450@example.com", "password": "s3cr3t-88d89450-correct", "event": "login_attempt", "request_id": "88d89450-9e0e70e74b25", "method": "POST", "trace_id": "0e29288e33afccfe72edc78604c70815", "user_id": "11", "endpoint": "auth-login", "ip_address": "127.0.0.1", "path": "/api/auth/login/", "level": "info", "logger": "boxoffice.views", "span_id": "0670cb0039f30872", "timestamp": "2026-11-23T07:02:14.099679Z"}"#,
        secrets: &["s3cr3t-88d89450-correct"],
        kept: &["ann.buyer+88d89450@example.com", "0e29288e33afccfe72edc78604c70815"],
    },
    SeedExample {
        name: "captured loki checkout_failed line",
        line: r#"{"event_id": 3, "email": "bob.fan+88d89450@example.com", "card_number": "4000000000000002", "message": "Payment declined for bob.fan+88d89450@example.com; customer asked to be contacted at bob.fan+88d89450@example.com", "event": "checkout_failed", "request_id": "88d89450-5f27151cc552", "method": "POST", "trace_id": "81d86309dd9a7325719fb114865f3774", "user_id": "22", "endpoint": "ticket-checkout", "ip_address": "127.0.0.1", "path": "/api/events/3/checkout/", "level": "error", "logger": "boxoffice.views", "span_id": "1fa7933abd0b17ec", "timestamp": "2026-11-23T07:02:59.820140Z"}"#,
        secrets: &["4000000000000002", "Payment declined for bob.fan"],
        kept: &["\"email\": \"bob.fan+88d89450@example.com\"", "checkout_failed"],
    },
    SeedExample {
        name: "structlog checkout with card, cvv and ssn",
        line: r#"{"event": "ticket_checkout", "email": "carol@example.org", "card_number": "5555 5555 5555 4444", "cvv": 123, "ssn": "078-05-1120", "note": "card 4242-4242-4242-4242 ssn 219-09-9999 mail carol@example.org"}"#,
        secrets: &["5555 5555 5555 4444", "4242-4242-4242-4242", "078-05-1120", "219-09-9999", "mail carol@"],
        kept: &["carol@example.org"],
    },
    SeedExample {
        name: "logfmt",
        line: r#"level=warn event=login_failed email=dave@example.net password="correct horse battery" api_key=ak_live_51Hd token=tok_2f9c msg="retry for dave@example.net""#,
        secrets: &["correct horse battery", "ak_live_51Hd", "tok_2f9c", "retry for dave@"],
        kept: &["email=dave@example.net"],
    },
    SeedExample {
        name: "plain text (django.request)",
        line: "Internal Server Error: /api/events/3/checkout/ card declined for bob.fan+88d89450@example.com (card 4000 0000 0000 0002, ssn 123-45-6789)",
        secrets: &["bob.fan+88d89450@example.com", "4000 0000 0000 0002", "123-45-6789"],
        kept: &["/api/events/3/checkout/"],
    },
    SeedExample {
        name: "plain text with a secret query parameter and an authorization header",
        line: "GET /callback?code=ok&token=eyJhbGciOiJIUzI1NiJ9.payload&next=/ Authorization: Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        secrets: &["eyJhbGciOiJIUzI1NiJ9.payload", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"],
        kept: &["code=ok", "next=/"],
    },
];

/// One raw secret found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretOnDisk {
    /// The file holding it.
    pub path: PathBuf,
    /// The secret.
    pub secret: String,
    /// Byte offset of the first occurrence in the file.
    pub offset: u64,
}

/// Searches every regular file under `data_dir` (recursively, symlinks not followed) for each of `secrets` as a
/// byte string, like `grep -r -F`. Returns every (file, secret) pair found, with the first offset; empty when the
/// directory is clean. Empty secrets are ignored.
///
/// # Errors
///
/// Any I/O error reading the directory tree or a file (a file that vanished while walking is skipped).
pub fn find_secrets_on_disk(data_dir: &Path, secrets: &[&str]) -> io::Result<Vec<SecretOnDisk>> {
    let finders: Vec<(&str, memchr::memmem::Finder<'_>)> = secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .map(|secret| (*secret, memchr::memmem::Finder::new(secret.as_bytes())))
        .collect();
    let mut found = Vec::new();
    let mut pending = vec![data_dir.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in fs::read_dir(&directory)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            let path = entry.path();
            if file_type.is_dir() {
                pending.push(path);
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let contents = match fs::read(&path) {
                Ok(contents) => contents,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            for (secret, finder) in &finders {
                if let Some(offset) = finder.find(&contents) {
                    found.push(SecretOnDisk { path: path.clone(), secret: secret.to_string(), offset: offset as u64 });
                }
            }
        }
    }
    found.sort_by(|left, right| left.path.cmp(&right.path).then(left.secret.cmp(&right.secret)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_secrets_in_nested_files_and_reports_clean_directories() -> io::Result<()> {
        let directory = tempfile::tempdir()?;
        fs::create_dir_all(directory.path().join("wal/segments"))?;
        fs::write(directory.path().join("wal/segments/000001"), b"\x00\x01{\"password\": \"hunter2\"}\xff")?;
        fs::write(directory.path().join("meta.json"), b"{}")?;
        let found = find_secrets_on_disk(directory.path(), &["hunter2", "absent", ""])?;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].secret, "hunter2");
        assert_eq!(found[0].offset, 16);
        assert!(found[0].path.ends_with("wal/segments/000001"));
        assert!(find_secrets_on_disk(directory.path(), &["absent"])?.is_empty());
        Ok(())
    }
}
