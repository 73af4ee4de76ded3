//! Tailing through appends, rotation by rename, truncation and restarts: every line exactly once.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;

use super::*;

fn source(dir: &Path, glob: &str, format: TailFormat) -> TailSource {
    TailSource {
        globs: vec![dir.join(glob).display().to_string()],
        labels: vec![("service_name".into(), "boxoffice".into())],
        json_labels: vec!["logger".into()],
        format,
    }
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn lines(batch: &TailBatch) -> Vec<String> {
    let mut entries: Vec<(i64, String)> = batch
        .streams
        .iter()
        .flat_map(|stream| stream.entries.iter().map(|entry| (entry.timestamp_ns, entry.line.clone())))
        .collect();
    entries.sort();
    entries.into_iter().map(|(_, line)| line).collect()
}

fn poll_and_commit(tailer: &mut Tailer) -> Vec<String> {
    let batch = tailer.poll().unwrap();
    tailer.commit().unwrap();
    lines(&batch)
}

fn structlog(index: usize) -> String {
    format!(
        "{{\"event\": \"request_finished\", \"request_id\": \"r-{index}\", \"logger\": \"boxoffice.views\", \"level\": \"info\", \"timestamp\": \"2026-11-23T07:02:{:02}.{:06}Z\"}}\n",
        index / 1_000_000 % 60,
        index % 1_000_000
    )
}

#[test]
fn appended_lines_are_read_once_and_partial_lines_wait() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut tailer = Tailer::new(
        vec![source(dir.path(), "app.log*", TailFormat::Text)],
        TailerOptions::new(dir.path().join("positions.json")),
    )
    .unwrap();
    assert!(tailer.poll().unwrap().is_empty(), "no file yet");
    append(&log, "one\ntwo\nthr");
    assert_eq!(poll_and_commit(&mut tailer), ["one", "two"]);
    assert_eq!(poll_and_commit(&mut tailer), Vec::<String>::new());
    append(&log, "ee\n");
    assert_eq!(poll_and_commit(&mut tailer), ["three"]);
}

#[test]
fn rotation_by_rename_and_truncation_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut tailer = Tailer::new(
        vec![source(dir.path(), "app.log*", TailFormat::Json)],
        TailerOptions::new(dir.path().join("positions.json")),
    )
    .unwrap();
    let mut expected = Vec::new();
    let mut read = Vec::new();
    let mut next = 0;
    for round in 0..4 {
        for _ in 0..5 {
            append(&log, &structlog(next));
            expected.push(structlog(next).trim_end().to_string());
            next += 1;
        }
        read.extend(poll_and_commit(&mut tailer));
        // Lines written after the last poll and before the rotation must not be lost.
        append(&log, &structlog(next));
        expected.push(structlog(next).trim_end().to_string());
        next += 1;
        if round % 2 == 0 {
            // RotatingFileHandler: app.log.1 -> app.log.2, app.log -> app.log.1, new app.log.
            let _ = std::fs::rename(dir.path().join("app.log.1"), dir.path().join("app.log.2"));
            std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        } else {
            read.extend(poll_and_commit(&mut tailer));
            // copytruncate: the content was copied elsewhere (not matched), the file emptied in place.
            std::fs::OpenOptions::new().write(true).truncate(true).open(&log).unwrap();
        }
    }
    read.extend(poll_and_commit(&mut tailer));
    read.extend(poll_and_commit(&mut tailer));
    expected.sort();
    read.sort();
    assert_eq!(read, expected);
}

#[test]
fn a_restart_resumes_at_the_committed_offset_even_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let positions = dir.path().join("positions.json");
    let sources = vec![source(dir.path(), "app.log*", TailFormat::Text)];
    append(&log, "a\nb\n");
    {
        let mut tailer = Tailer::new(sources.clone(), TailerOptions::new(&positions)).unwrap();
        assert_eq!(poll_and_commit(&mut tailer), ["a", "b"]);
        append(&log, "c\n");
        // Read but not committed (the push failed or the process died before the WAL fsync).
        assert_eq!(lines(&tailer.poll().unwrap()), ["c"]);
    }
    // While down, the file is rotated and a new one started.
    append(&log, "d\n");
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, "e\n");
    let mut tailer = Tailer::new(sources, TailerOptions::new(&positions)).unwrap();
    let mut read = poll_and_commit(&mut tailer);
    read.sort();
    assert_eq!(read, ["c", "d", "e"]);
}

#[test]
fn a_reused_inode_with_other_content_is_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let positions = dir.path().join("positions.json");
    let sources = vec![source(dir.path(), "app.log", TailFormat::Text)];
    append(&log, "first file line\n");
    {
        let mut tailer = Tailer::new(sources.clone(), TailerOptions::new(&positions)).unwrap();
        assert_eq!(poll_and_commit(&mut tailer), ["first file line"]);
    }
    // Rewritten in place (same inode) with longer, different content.
    std::fs::write(&log, "other content, longer than before\n").unwrap();
    let mut tailer = Tailer::new(sources, TailerOptions::new(&positions)).unwrap();
    assert_eq!(poll_and_commit(&mut tailer), ["other content, longer than before"]);
}

#[test]
fn rollback_reads_the_same_lines_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut tailer = Tailer::new(
        vec![source(dir.path(), "app.log", TailFormat::Text)],
        TailerOptions::new(dir.path().join("positions.json")),
    )
    .unwrap();
    append(&log, "x\n");
    assert_eq!(lines(&tailer.poll().unwrap()), ["x"]);
    tailer.rollback();
    assert_eq!(poll_and_commit(&mut tailer), ["x"]);
}

#[test]
fn json_lines_get_their_timestamp_labels_and_level() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("app.log"), &structlog(7));
    append(&dir.path().join("app.log"), "not json at all\n");
    let mut tailer = Tailer::new(
        vec![source(dir.path(), "app.log", TailFormat::Json)],
        TailerOptions::new(dir.path().join("positions.json")),
    )
    .unwrap();
    let batch = tailer.poll().unwrap();
    let json_stream = batch.streams.iter().find(|stream| stream.labels.get("logger").is_some()).unwrap();
    assert_eq!(json_stream.labels.get("service_name"), Some("boxoffice"));
    assert_eq!(json_stream.labels.get("logger"), Some("boxoffice.views"));
    let entry = &json_stream.entries[0];
    assert_eq!(entry.timestamp_ns, parse_rfc3339_ns("2026-11-23T07:02:00.000007Z").unwrap());
    assert_eq!(entry.metadata("detected_level"), Some("info"));
    assert!(entry.metadata("filename").unwrap().ends_with("app.log"));
    let text_stream = batch.streams.iter().find(|stream| stream.labels.get("logger").is_none()).unwrap();
    assert_eq!(text_stream.entries[0].line, "not json at all");
}

#[test]
fn rfc3339_timestamps() {
    assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339_ns("2026-11-23T07:02:14.099679Z"), Some(1_795_417_334_099_679_000));
    assert_eq!(parse_rfc3339_ns("2026-11-23T08:02:14.099679+01:00"), Some(1_795_417_334_099_679_000));
    assert_eq!(parse_rfc3339_ns("2000-02-29 00:00:00Z"), Some(951_782_400_000_000_000));
    assert_eq!(parse_rfc3339_ns("2026-11-23T07:02:14"), None);
    assert_eq!(parse_rfc3339_ns("2026-13-23T07:02:14Z"), None);
    assert_eq!(parse_rfc3339_ns("yesterday"), None);
}

#[test]
fn an_idle_commit_does_not_rewrite_the_positions_file() {
    let dir = tempfile::tempdir().unwrap();
    let positions = dir.path().join("positions.json");
    append(&dir.path().join("app.log"), "x\n");
    let mut tailer =
        Tailer::new(vec![source(dir.path(), "app.log", TailFormat::Text)], TailerOptions::new(&positions)).unwrap();
    assert_eq!(poll_and_commit(&mut tailer), ["x"]);
    std::fs::remove_file(&positions).unwrap();
    assert!(poll_and_commit(&mut tailer).is_empty());
    assert!(!positions.exists(), "nothing changed, nothing written");
    append(&dir.path().join("app.log"), "y\n");
    assert_eq!(poll_and_commit(&mut tailer), ["y"]);
    assert!(positions.exists());
}
