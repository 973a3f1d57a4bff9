//! Validation over whole documents, where the test asserts the typed result: the example is clean
//! and complete, and a valid IPsec case keeps its name and values. Config → errors cases live in
//! `testdata/` and run from `cases.rs`.

use kawaii_model::{Format, Gateway, validate};

fn parse(text: &str) -> Gateway {
    Gateway::parse(text, Format::Toml).expect("parses")
}

#[test]
fn the_example_is_valid_and_silent() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/gateway.toml"
    ))
    .expect("example");
    let report = validate(&parse(&text)).expect("valid");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.desired.nat_rules.len(), 2);
}

#[test]
fn ipsec_names_with_spaces_and_dh_group_5_are_kept() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/valid/ipsec-acme-office/config.toml"
    ))
    .expect("case");
    let report = validate(&parse(&text)).expect("valid");
    assert_eq!(report.desired.ipsec[0].name, "ACME Office");
    assert_eq!(report.desired.ipsec[0].phase1.dh_group, 5);
}
