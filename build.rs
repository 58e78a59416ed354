//! Tells the integration suite whether a PostgreSQL server was named for
//! it (`STOA_TEST_POSTGRES`), so the PostgreSQL-only tests are compiled in,
//! or reported as not run, never as passed.

fn main() {
    println!("cargo::rerun-if-env-changed=STOA_TEST_POSTGRES");
    println!("cargo::rustc-check-cfg=cfg(stoa_test_postgres)");
    if std::env::var("STOA_TEST_POSTGRES").is_ok_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=stoa_test_postgres");
    }
}
