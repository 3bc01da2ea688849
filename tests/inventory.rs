//! `docs/dpia-inventory.md` is what `nachtwacht inventory --format markdown` prints: the data
//! inventory for the DPIA is generated from the code, and this test keeps the checked-in copy
//! current (regenerate it with `cargo run -- inventory > docs/dpia-inventory.md`).

use std::process::Command;

#[test]
fn the_checked_in_inventory_is_the_binarys_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["inventory", "--format", "markdown"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    assert_eq!(generated, nachtwacht::accountability::inventory::markdown());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dpia-inventory.md");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/dpia-inventory.md is not current: run `cargo run -- inventory > docs/dpia-inventory.md`"
    );
    // Every column is classified: nothing reads "NOT IN THE INVENTORY".
    assert!(!generated.contains("NOT IN THE INVENTORY"));

    let json = Command::new(env!("CARGO_BIN_EXE_nachtwacht"))
        .args(["inventory", "--format", "json"])
        .output()
        .unwrap();
    let items: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let persons = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "persons")
        .unwrap();
    let reference = persons["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "reference")
        .unwrap();
    assert_eq!(reference["category"], "special: criminal-law");
    assert_eq!(reference["personal"], true);
}
