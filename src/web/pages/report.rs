//! The non-compliance report of an alert: one content, two forms. `/alerts/{id}/report` is a
//! printable page (print styles put the case reference at the top of every page and the page
//! number at the bottom); `/alerts/{id}/report.pdf` is the same content as a PDF written on the
//! server (`web::pdf`), with the case reference and "page i of n" on every page. The rule's
//! criteria are written out in words, the evidence bundles with the SHA-256 of their
//! ciphertexts, and the alert's seal in the audit log as the integrity line.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::alerts::casework::AlertDetail;
use crate::alerts::AlertKind;
use crate::web::access::Signed;
use crate::web::i18n::Lang;
use crate::web::page::{esc, fail, frame, time};
use crate::web::pages::officer::{
    kind_label, load, programme_label, severity_label, status_label, AlertId,
};
use crate::web::pdf::{self, Block, Chart, Document};
use crate::web::AppState;

/// What the report says, in the reader's language, before it is laid out.
struct Report {
    title: String,
    /// "Zaak CASE-1 · melding 7", on every page.
    running_header: String,
    facts: Vec<(String, String)>,
    criteria: Vec<(String, String)>,
    interpretation: String,
    evidence: Vec<String>,
    integrity: String,
    history: Vec<Vec<String>>,
    prepared: String,
}

/// The alert (read and audited as `alert.report`) and its report in the reader's language.
async fn loaded(
    state: &AppState,
    lang: Lang,
    session: &crate::registry::accounts::Session,
    id: i64,
) -> Result<(AlertDetail, Report), Response> {
    let d = load(state, session, id, "report")
        .await
        .map_err(|e| fail(lang, e))?;
    let r = report(lang, &d, &session.account.username);
    Ok((d, r))
}

/// The printable page.
pub async fn page(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    AlertId(id): AlertId,
) -> Response {
    let (d, r) = match loaded(&state, lang, &session, id).await {
        Ok(loaded) => loaded,
        Err(response) => return response,
    };
    let pairs = |rows: &[(String, String)], table_id: &str| -> String {
        let rows: String = rows
            .iter()
            .map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v)))
            .collect();
        format!("<table id=\"{table_id}\">{rows}</table>")
    };
    let history = if r.history.is_empty() {
        format!("<p>{}</p>", lang.t("report.no_steps"))
    } else {
        let rows: String = r
            .history
            .iter()
            .map(|row| {
                let cells: String = row.iter().map(|c| format!("<td>{}</td>", esc(c))).collect();
                format!("<tr>{cells}</tr>")
            })
            .collect();
        format!(
            "<table id=\"history\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{rows}</table>",
            lang.t("time"),
            lang.t("actor"),
            lang.t("status"),
            lang.t("comment")
        )
    };
    let evidence: String = r
        .evidence
        .iter()
        .map(|l| format!("<li><code>{}</code></li>", esc(l)))
        .collect();
    // Page-margin boxes (CSS Paged Media): the case reference on top of every printed page, the
    // page number below. The reference goes into a CSS string, so it is escaped for CSS too.
    let css_header = r.running_header.replace('\\', "\\\\").replace('"', "\\\"");
    let body = format!(
        "<style>@page{{margin:22mm 16mm;@top-left{{content:\"{css}\";font:9pt sans-serif}}\
         @bottom-right{{content:\"{page} \" counter(page) \" {of} \" counter(pages);font:9pt sans-serif}}}}</style>\
         <p class=\"noprint\"><a href=\"/alerts/{id}\">{back}</a> · <a id=\"pdf\" class=\"button\" href=\"/alerts/{id}/report.pdf\">{print}</a></p>\
         <p class=\"note\">{header}</p>\
         <h2>{facts_h}</h2>{facts}<h2>{criteria_h}</h2>{criteria}<h2>{interp_h}</h2><p id=\"interpretation\">{interp}</p>\
         <h2>{evidence_h}</h2><ul id=\"evidence\">{evidence}</ul><p id=\"integrity\">{integrity}</p>\
         <h2>{history_h}</h2>{history}<p class=\"note\">{prepared}</p>",
        css = esc(&css_header),
        page = lang.t("report.page"),
        of = lang.t("report.of"),
        id = d.alert.id,
        back = lang.t("back"),
        print = lang.t("report.print"),
        header = esc(&r.running_header),
        facts_h = lang.t("report.facts"),
        facts = pairs(&r.facts, "facts"),
        criteria_h = lang.t("criteria"),
        criteria = pairs(&r.criteria, "criteria"),
        interp_h = lang.t("interpretation"),
        interp = esc(&r.interpretation),
        evidence_h = lang.t("report.evidence"),
        integrity = esc(&r.integrity),
        history_h = lang.t("history"),
        prepared = esc(&r.prepared),
    );
    frame(lang, Some(&session), &r.title, &body).into_response()
}

/// The same report as a PDF.
pub async fn pdf(
    State(state): State<AppState>,
    lang: Lang,
    Signed(session): Signed,
    AlertId(id): AlertId,
) -> Response {
    let (d, r) = match loaded(&state, lang, &session, id).await {
        Ok(loaded) => loaded,
        Err(response) => return response,
    };
    let mut blocks = vec![
        Block::Heading(lang.t("report.facts").into()),
        Block::Pairs(r.facts),
    ];
    if let Some(chart) = tac_chart(lang, &d) {
        blocks.push(Block::Chart(chart));
    }
    blocks.extend([
        Block::Heading(lang.t("criteria").into()),
        Block::Pairs(r.criteria),
        Block::Heading(lang.t("interpretation").into()),
        Block::Paragraph(r.interpretation),
        Block::Heading(lang.t("report.evidence").into()),
        Block::Mono(r.evidence),
        Block::Paragraph(r.integrity),
        Block::Heading(lang.t("history").into()),
    ]);
    if r.history.is_empty() {
        blocks.push(Block::Paragraph(lang.t("report.no_steps").into()));
    } else {
        blocks.push(Block::Table {
            header: ["time", "actor", "status", "comment"]
                .iter()
                .map(|k| lang.t(k).to_string())
                .collect(),
            rows: r.history,
        });
    }
    blocks.push(Block::Paragraph(r.prepared));
    let doc = Document {
        title: r.title,
        running_header: r.running_header,
        blocks,
    };
    let (page, of) = (lang.t("report.page"), lang.t("report.of"));
    let bytes = pdf::render(&doc, |i, n| format!("{page} {i} {of} {n}"));
    crate::web::page::download(
        bytes,
        "application/pdf",
        &format!("rapport-melding-{}.pdf", d.alert.id),
    )
}

fn report(lang: Lang, d: &AlertDetail, prepared_by: &str) -> Report {
    let a = &d.alert;
    let zone = crate::web::page::zone();
    let mut facts = vec![
        (lang.t("reference").to_string(), a.person_reference.clone()),
        (
            lang.t("programme").to_string(),
            programme_label(lang, a.programme).to_string(),
        ),
        (
            lang.t("kind").to_string(),
            kind_label(lang, a.kind).to_string(),
        ),
        (
            lang.t("severity").to_string(),
            severity_label(lang, a.severity).to_string(),
        ),
        (
            lang.t("report.period").to_string(),
            format!("{} – {}", time(a.start_ms), time(a.end_ms)),
        ),
        (
            lang.t("status").to_string(),
            status_label(lang, a.status).to_string(),
        ),
        (lang.t("report.raised").to_string(), time(a.created_at_ms)),
    ];
    if let Some(peak) = a.peak_tac_g_dl {
        facts.push((lang.t("report.peak").to_string(), grams(peak)));
    }
    facts.push((lang.t("report.zone").to_string(), zone.name().to_string()));
    let evidence = if d.evidence_digests.is_empty() {
        vec![format!(
            "{} ({} {})",
            lang.t("report.evidence.contacts"),
            d.station_contacts.len(),
            lang.t("report.evidence.contacts.n")
        )]
    } else {
        d.evidence_digests
            .iter()
            .map(|(bundle, sha)| format!("{bundle}  SHA-256 {sha}"))
            .collect()
    };
    let integrity = match &d.seal {
        Some((seq, hash)) => format!(
            "{} {seq}, {} {hash}",
            lang.t("report.integrity"),
            lang.t("report.integrity.hash")
        ),
        None => lang.t("report.integrity.none").to_string(),
    };
    let history = d
        .steps
        .iter()
        .map(|s| {
            vec![
                time(s.at_ms),
                s.actor.clone(),
                format!(
                    "{} → {}",
                    status_label(lang, s.from_status),
                    status_label(lang, s.to_status)
                ),
                s.comment.clone(),
            ]
        })
        .collect();
    Report {
        title: format!("{} — {} {}", lang.t("report"), lang.t("alert"), a.id),
        running_header: format!(
            "{} {} · {} {}",
            lang.t("report.case"),
            a.person_reference,
            lang.t("alert"),
            a.id
        ),
        facts,
        criteria: criteria(lang, &a.rule),
        interpretation: if a.kind == AlertKind::Alcohol {
            lang.t("interp.alcohol").to_string()
        } else {
            lang.t("interp.other").to_string()
        },
        evidence,
        integrity,
        history,
        prepared: format!(
            "{}: {} · {}",
            lang.t("generated"),
            prepared_by,
            time(crate::base::time::now_ms())
        ),
    }
}

fn grams(v: f64) -> String {
    format!("{v:.3} g/dL").replace('.', ",")
}

fn number(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        serde_json::Value::Number(n) => {
            let f = n.as_f64().unwrap_or_default();
            let text = format!("{f:.4}");
            text.trim_end_matches('0')
                .trim_end_matches('.')
                .replace('.', ",")
        }
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(number).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// The rule that fired and its parameters, in words. Every key a rule writes has a label;
/// a key without one (from a future rule) is shown under its own name rather than dropped.
pub fn criteria(lang: Lang, rule: &str) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(rule) else {
        // Alerts stored before their rules were written as data carry a sentence.
        return vec![(lang.t("crit.rule").to_string(), rule.to_string())];
    };
    let mut out = Vec::new();
    // The rule and the assessment first, then its parameters.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| match k.as_str() {
        "rule" => 0,
        "reason" => 1,
        "threshold_g_dl" => 2,
        _ => 3,
    });
    for key in keys {
        let value = &map[key];
        if value.is_null() {
            continue;
        }
        let (label, text) = match key.as_str() {
            "rule" => (
                "crit.rule",
                value
                    .as_str()
                    .map(|r| rule_name(lang, r))
                    .unwrap_or_default(),
            ),
            "threshold_g_dl" | "noise_allowance_g_dl" | "ambient_exposure_g_dl" => (
                match key.as_str() {
                    "threshold_g_dl" => "crit.threshold_g_dl",
                    "noise_allowance_g_dl" => "crit.noise_allowance_g_dl",
                    _ => "crit.ambient_exposure_g_dl",
                },
                value.as_f64().map(grams).unwrap_or_default(),
            ),
            "max_rise_per_hour"
            | "max_elimination_per_hour"
            | "mean_rise_per_hour"
            | "mean_fall_per_hour" => (
                match key.as_str() {
                    "max_rise_per_hour" => "crit.max_rise_per_hour",
                    "max_elimination_per_hour" => "crit.max_elimination_per_hour",
                    "mean_rise_per_hour" => "crit.mean_rise_per_hour",
                    _ => "crit.mean_fall_per_hour",
                },
                format!("{} g/dL {}", number(value), lang.t("crit.per_hour")),
            ),
            "evidence_from_ms" | "evidence_to_ms" => (
                if key == "evidence_from_ms" {
                    "crit.evidence_from"
                } else {
                    "crit.evidence_to"
                },
                value.as_i64().map(time).unwrap_or_default(),
            ),
            "reason" => (
                "crit.reason",
                match value.as_str() {
                    Some("ambient-alcohol") => lang.t("reason.ambient-alcohol"),
                    Some("rise-too-fast") => lang.t("reason.rise-too-fast"),
                    Some("fall-too-fast") => lang.t("reason.fall-too-fast"),
                    _ => lang.t("reason.drinking"),
                }
                .to_string(),
            ),
            other => match crit_label(other) {
                Some((label, unit)) => (
                    label,
                    format!("{}{}", number(value), unit.map(|u| lang.t(u)).unwrap_or("")),
                ),
                None => {
                    out.push((other.to_string(), number(value)));
                    continue;
                }
            },
        };
        out.push((lang.t(label).to_string(), text));
    }
    out
}

/// Label and unit keys of the plain numeric parameters.
fn crit_label(key: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match key {
        "min_consecutive_readings" => ("crit.min_consecutive_readings", Some("crit.unit.readings")),
        "noise_allowance_percent" => ("crit.noise_allowance_percent", Some("crit.unit.percent")),
        "max_reading_gap_minutes" => ("crit.max_reading_gap_minutes", Some("crit.unit.minutes")),
        "pending_hours" => ("crit.pending_hours", Some("crit.unit.hours")),
        "readings" => ("crit.readings", Some("crit.unit.readings")),
        "removal_max_skin_temp_c" => ("crit.removal_max_skin_temp_c", Some("crit.unit.celsius")),
        "ir_deviation_fraction" => ("crit.ir_deviation_fraction", Some("crit.unit.fraction")),
        "ir_baseline_readings" => ("crit.ir_baseline_readings", Some("crit.unit.readings")),
        "obstruction_min_hours" => ("crit.obstruction_min_hours", Some("crit.unit.hours")),
        "battery_low_pct" => ("crit.battery_low_pct", Some("crit.unit.percent")),
        "fault_events" => ("crit.fault_events", Some("crit.unit.events")),
        "silence_minutes" => ("crit.silence_minutes", Some("crit.unit.minutes")),
        "critical_silence_hours" => ("crit.critical_silence_hours", Some("crit.unit.hours")),
        "devices" => ("crit.devices", None),
        "clock_offset_secs" => ("crit.clock_offset_secs", Some("crit.unit.seconds")),
        "max_clock_offset_secs" => ("crit.max_clock_offset_secs", Some("crit.unit.seconds")),
        _ => return None,
    })
}

fn rule_name(lang: Lang, rule: &str) -> String {
    let key = match rule {
        "alcohol.episode" => "rule.alcohol.episode",
        "tamper.strap_open" => "rule.tamper.strap_open",
        "tamper.possible_removal" => "rule.tamper.possible_removal",
        "tamper.obstruction" => "rule.tamper.obstruction",
        "device.battery_low" => "rule.device.battery_low",
        "device.fault" => "rule.device.fault",
        "communication.lost" => "rule.communication.lost",
        "communication.critical" => "rule.communication.critical",
        "communication.device_disconnected" => "rule.communication.device_disconnected",
        "communication.spool_full" => "rule.communication.spool_full",
        "communication.clock_drift" => "rule.communication.clock_drift",
        other => return other.to_string(),
    };
    lang.t(key).to_string()
}

/// The TAC curve around the alert for the PDF (ankle monitors; none for other evidence).
fn tac_chart(lang: Lang, d: &AlertDetail) -> Option<Chart> {
    if d.tac.is_empty() {
        return None;
    }
    let a = &d.alert;
    let window = 12 * crate::base::time::HOUR_MS;
    let (from, to) = ((a.start_ms - window) as f64, (a.end_ms + window) as f64);
    let peak = d.tac.iter().map(|p| p.1).fold(d.threshold_g_dl, f64::max);
    let zone = crate::web::page::zone();
    let step = 6 * crate::base::time::HOUR_MS;
    let first = (a.start_ms - window).div_euclid(step) * step + step;
    let x_ticks = (0..8)
        .map(|i| first + i * step)
        .filter(|t| (*t as f64) < to)
        .map(|t| (t as f64, zone.format(t, "%d-%m %H:%M")))
        .collect();
    Some(Chart {
        points: d.tac.iter().map(|p| (p.0 as f64, p.1)).collect(),
        x_range: (from, to),
        y_max: (peak * 1.2 * 100.0).ceil() / 100.0,
        threshold: Some((
            d.threshold_g_dl,
            format!(
                "{} {}",
                lang.t("crit.threshold_g_dl"),
                grams(d.threshold_g_dl)
            ),
        )),
        shade: Some((a.start_ms as f64, a.end_ms as f64)),
        x_ticks,
        y_label: "TAC (g/dL)".into(),
        x_label: format!("{} ({})", lang.t("time"), zone.name()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the rules write is said in words: no criterion is shown under its code.
    #[test]
    fn every_rule_parameter_is_written_in_words() {
        let rules = [
            r#"{"rule":"alcohol.episode","threshold_g_dl":0.02,"min_consecutive_readings":3,"max_rise_per_hour":0.05,"max_elimination_per_hour":0.025,"noise_allowance_g_dl":0.008,"noise_allowance_percent":8,"ambient_exposure_g_dl":0.01,"max_reading_gap_minutes":90,"pending_hours":12,"reason":"rise-too-fast","evidence_from_ms":0,"evidence_to_ms":1,"readings":9,"mean_rise_per_hour":0.013,"mean_fall_per_hour":0.012}"#,
            r#"{"rule":"tamper.possible_removal","removal_max_skin_temp_c":28.0,"ir_deviation_fraction":0.4,"ir_baseline_readings":12}"#,
            r#"{"rule":"tamper.obstruction","obstruction_min_hours":2,"ir_deviation_fraction":0.4,"ir_baseline_readings":12}"#,
            r#"{"rule":"device.battery_low","battery_low_pct":15}"#,
            r#"{"rule":"device.fault","fault_events":3}"#,
            r#"{"rule":"communication.lost","silence_minutes":60}"#,
            r#"{"rule":"communication.critical","critical_silence_hours":48}"#,
            r#"{"rule":"communication.device_disconnected","devices":["AM-1"]}"#,
            r#"{"rule":"communication.spool_full"}"#,
            r#"{"rule":"communication.clock_drift","clock_offset_secs":400,"max_clock_offset_secs":300}"#,
        ];
        for lang in [Lang::Nl, Lang::En] {
            for rule in rules {
                let keys: Vec<String> =
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(rule)
                        .unwrap()
                        .keys()
                        .cloned()
                        .collect();
                for (label, value) in criteria(lang, rule) {
                    assert!(!keys.contains(&label), "{label} shown as a code in {rule}");
                    assert!(
                        !value.contains('.') || value.contains("g/dL") || value.contains(':'),
                        "{value:?} looks like a code in {rule}"
                    );
                    assert!(
                        !label.starts_with("crit.") && !value.starts_with("rule."),
                        "{label} {value}"
                    );
                }
            }
        }
        let nl = criteria(Lang::Nl, rules[5]);
        assert_eq!(nl[0].1, "Geen contact met het basisstation");
        assert_eq!(
            nl[1],
            (
                "Geen contact langer dan".to_string(),
                "60 minuten".to_string()
            )
        );
    }
}
