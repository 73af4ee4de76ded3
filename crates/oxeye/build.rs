//! Links the functions that start-up and the dashboard queries run next to each other at the start of
//! `.text` (LLD's `--symbol-ordering-file`).
//!
//! Why: a process' resident memory counts every page of the executable it has touched, and the kernel
//! maps file pages in 64 KiB windows around each fault (fault-around). About 2.5 MB of the 13.6 MB of
//! code runs while the server starts and answers PromQL queries, but scattered over the whole text it
//! kept 8.6-10 MiB of it resident (BENCHMARKS.md, "PromQL memory, session 9"). The list is made by
//! `scripts/startup-functions.sh`; names it holds that a build no longer has are skipped.

fn main() {
    let order_file = "link/startup-and-query-functions.txt";
    println!("cargo:rerun-if-changed={order_file}");
    println!("cargo:rerun-if-changed=build.rs");
    // Only where rustc links with LLD by default (x86_64 Linux since Rust 1.90); other linkers do not
    // take the flag.
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return;
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rustc-link-arg-bin=oxeye=-Wl,--symbol-ordering-file={manifest_dir}/{order_file}");
    println!("cargo:rustc-link-arg-bin=oxeye=-Wl,--no-warn-symbol-ordering");
}
