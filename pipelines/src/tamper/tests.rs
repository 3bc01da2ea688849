use super::*;

const HALF_HOUR_MS: i64 = 1_800_000;
const T0: i64 = 1_700_006_400_000;

fn utc(lf: LazyFrame) -> LazyFrame {
    lf.with_column(col("ts").cast(DataType::Datetime(
        TimeUnit::Milliseconds,
        Some(TimeZone::UTC),
    )))
}

/// Ankle readings every 30 minutes: (skin temperature, IR, strap closed) per reading. Bundles
/// hold four readings each.
fn ankle(pid: &str, rows: &[(f64, f64, bool)]) -> LazyFrame {
    let n = rows.len();
    utc(df!(
        "pid" => vec![pid; n],
        "ts" => (0..n as i64).map(|i| T0 + i * HALF_HOUR_MS).collect::<Vec<_>>(),
        "tac_g_dl" => vec![0.0; n],
        "skin_temp_c" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "ir" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "strap_closed" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "bundle_id" => (0..n).map(|i| format!("b{}", i / 4)).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy())
}

const WORN: (f64, f64, bool) = (33.0, 1.0, true);

fn events(lf: LazyFrame) -> Vec<(String, String, u32)> {
    let df = lf.collect().unwrap();
    let pid = df.column("pid").unwrap().str().unwrap().clone();
    let kind = df.column("kind").unwrap().str().unwrap().clone();
    let readings = df.column("readings").unwrap().u32().unwrap().clone();
    (0..df.height())
        .map(|i| {
            (
                pid.get(i).unwrap().to_string(),
                kind.get(i).unwrap().to_string(),
                readings.get(i).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_day_of_normal_wear_raises_nothing() {
    let rules = TamperRules::default();
    assert!(events(ankle_tamper(ankle("p1", &[WORN; 48]), &rules)).is_empty());
}

#[test]
fn an_open_strap_is_one_event_per_opening_with_its_bundles() {
    let mut rows = vec![WORN; 12];
    for r in &mut rows[5..8] {
        r.2 = false;
    }
    rows[10].2 = false;
    let df = ankle_tamper(ankle("p1", &rows), &TamperRules::default())
        .collect()
        .unwrap();
    let got = events(df.clone().lazy());
    assert_eq!(
        got,
        vec![
            ("p1".into(), KIND_STRAP_OPEN.into(), 3),
            ("p1".into(), KIND_STRAP_OPEN.into(), 1)
        ],
        "{df}"
    );
    // Readings 5..8 came in bundles b1 (4..8).
    assert_eq!(
        df.column("bundle_ids").unwrap().str().unwrap().get(0),
        Some("b1")
    );
}

#[test]
fn obstruction_needs_two_hours_of_changed_ir_on_warm_skin() {
    let rules = TamperRules::default();
    // IR drops to 0.2 (80% off the baseline of 1.0) for 4 readings: 1.5 hours, not enough.
    let mut short = vec![WORN; 16];
    for r in &mut short[6..10] {
        r.1 = 0.2;
    }
    assert!(events(ankle_tamper(ankle("p1", &short), &rules)).is_empty());
    // For 6 readings: 2.5 hours.
    let mut long = vec![WORN; 16];
    for r in &mut long[6..12] {
        r.1 = 0.2;
    }
    assert_eq!(
        events(ankle_tamper(ankle("p1", &long), &rules)),
        vec![("p1".into(), KIND_OBSTRUCTION.into(), 6)]
    );
}

#[test]
fn cold_skin_with_an_ir_change_is_possible_removal_not_obstruction() {
    let mut rows = vec![WORN; 16];
    for r in &mut rows[6..12] {
        *r = (22.0, 0.1, true);
    }
    assert_eq!(
        events(ankle_tamper(ankle("p1", &rows), &TamperRules::default())),
        vec![("p1".into(), KIND_REMOVAL.into(), 6)]
    );
    // Cold skin alone (a cold night, IR steady) is not removal.
    let mut cold = vec![WORN; 16];
    for r in &mut cold[6..12] {
        r.0 = 22.0;
    }
    assert!(events(ankle_tamper(ankle("p1", &cold), &TamperRules::default())).is_empty());
}

#[test]
fn two_people_interleaved_do_not_share_a_run() {
    let mut a = vec![WORN; 8];
    a[7].2 = false;
    let mut b = vec![WORN; 8];
    b[0].2 = false;
    let both = concat([ankle("p1", &a), ankle("p2", &b)], UnionArgs::default())
        .unwrap()
        .sort(["ts"], SortMultipleOptions::default());
    let got = events(ankle_tamper(both, &TamperRules::default()));
    assert_eq!(
        got,
        vec![
            ("p1".into(), KIND_STRAP_OPEN.into(), 1),
            ("p2".into(), KIND_STRAP_OPEN.into(), 1)
        ]
    );
}

#[test]
fn battery_low_is_one_event_per_dip() {
    let pct = [40.0, 20.0, 14.0, 12.0, 13.0, 90.0, 10.0];
    let n = pct.len();
    let lf = utc(df!(
        "pid" => vec!["p1"; n],
        "ts" => (0..n as i64).map(|i| T0 + i * 600_000).collect::<Vec<_>>(),
        "battery_pct" => pct,
        "bundle_id" => vec!["b"; n],
    )
    .unwrap()
    .lazy());
    assert_eq!(
        events(battery_low(lf, &TamperRules::default())),
        vec![
            ("p1".into(), KIND_BATTERY_LOW.into(), 3),
            ("p1".into(), KIND_BATTERY_LOW.into(), 1)
        ]
    );
}

#[test]
fn only_fault_events_are_device_faults() {
    let ev = [
        "power-on",
        "self-test-pass",
        "firmware-fault",
        "strap-open",
        "self-test-fail",
    ];
    let n = ev.len();
    let lf = utc(df!(
        "pid" => vec!["p1"; n],
        "ts" => (0..n as i64).map(|i| T0 + i * 600_000).collect::<Vec<_>>(),
        "event" => ev,
        "bundle_id" => vec!["b"; n],
    )
    .unwrap()
    .lazy());
    assert_eq!(
        events(device_faults(lf, &TamperRules::default())),
        vec![
            ("p1".into(), KIND_DEVICE_FAULT.into(), 1),
            ("p1".into(), KIND_DEVICE_FAULT.into(), 1)
        ]
    );
}
