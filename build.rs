//! Tells the integration suite whether a PostgreSQL server
//! (`STOA_TEST_POSTGRES`) or a running cluster (`STOA_TEST_CLUSTER`) was
//! named for it, so the tests that need one are compiled in, or reported
//! as not run, never as passed.

fn main() {
    for (variable, cfg) in [
        ("STOA_TEST_POSTGRES", "stoa_test_postgres"),
        ("STOA_TEST_CLUSTER", "stoa_test_cluster"),
    ] {
        println!("cargo::rerun-if-env-changed={variable}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if std::env::var(variable).is_ok_and(|value| !value.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
