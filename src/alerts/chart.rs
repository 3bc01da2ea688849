//! Evidence charts drawn on the server as inline SVG (the officer's pages, reports and court
//! dossiers): no script runs in the officer's browser and
//! the printed report shows exactly what the screen showed.

use crate::base::html::esc;

const W: f64 = 760.0;
const PLOT_H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
/// Height of each timeline strip under the curve.
const STRIP_H: f64 = 14.0;
/// From the time axis to the first strip: tick labels, then the axis' title.
const STRIPS_BELOW: f64 = 38.0;

/// The two axes of a plot `height` high under [`TOP`], tick labels every `step` from `y_min` to
/// `y_max`, and the value axis' title (already escaped) turned along it, clear of the labels.
fn value_axis(
    height: f64,
    (y_min, y_max, step): (f64, f64, f64),
    title: &str,
    y: impl Fn(f64) -> f64,
) -> String {
    let mut s = format!(
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#333\"/>\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/>",
        b = TOP + height,
        r = W - RIGHT
    );
    let places = decimals(step);
    for i in 0..=((y_max - y_min) / step).round() as usize {
        let v = y_min + step * i as f64;
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.places$}</text>",
            LEFT - 4.0,
            y(v) + 4.0
        );
    }
    s + &format!(
        "<text x=\"10\" y=\"{mid:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 10 {mid:.1})\">{title}</text>",
        mid = TOP + height / 2.0
    )
}

/// The time axis' title with its zone, under the tick labels of a plot ending at `base`.
fn time_title(title: &str, zone: crate::base::time::Zone, base: f64) -> String {
    format!(
        "<text x=\"{r}\" y=\"{ty}\" text-anchor=\"end\" fill=\"#555\">{} ({})</text>",
        esc(title),
        esc(zone.name()),
        r = W - RIGHT,
        ty = base + 30.0
    )
}

/// Ticks along a time axis at `base`: local 00:00, 06:00, 12:00 and 18:00 (daylight saving
/// included), only every other one or every fourth when the span is long, so labels never overlap.
fn time_ticks(
    zone: crate::base::time::Zone,
    from_ms: i64,
    to_ms: i64,
    base: f64,
    x: impl Fn(i64) -> f64,
) -> String {
    let days = (to_ms - from_ms) / crate::base::time::DAY_MS + 1;
    let hours: &[u32] = match days {
        0..=2 => &[0, 6, 12, 18],
        3..=5 => &[0, 12],
        _ => &[0],
    };
    let every = (days / 12 + 1) as usize;
    let mut ticks = Vec::new();
    let mut day = zone.date_of(from_ms);
    let mut n = 0usize;
    while zone.day_start_ms(day) < to_ms {
        for hour in hours {
            let t = zone.at(day, *hour);
            if t > from_ms && t < to_ms {
                if n.is_multiple_of(every) {
                    ticks.push(t);
                }
                n += 1;
            }
        }
        day = day.succ_opt().unwrap_or(day);
    }
    let mut s = String::new();
    for t in ticks {
        let label = zone.format(t, if days > 2 { "%d-%m" } else { "%d-%m %H:%M" });
        s += &format!(
            "<line x1=\"{x:.1}\" y1=\"{base}\" x2=\"{x:.1}\" y2=\"{b2}\" stroke=\"#333\"/>\
             <text x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>",
            x = x(t),
            b2 = base + 4.0,
            ty = base + 16.0
        );
    }
    s
}

/// A measured series over time (the wristband's evidence per minute around an alert): a round
/// scale, the unit as the axis' title, the alert's period shaded, the line broken where nothing
/// was measured.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub points: &'a [(i64, f64)],
    pub alert: (i64, i64),
    pub zone: crate::base::time::Zone,
    pub time_title: &'a str,
}

impl LineChart<'_> {
    fn x(&self, ts: i64) -> f64 {
        let span = (self.to_ms - self.from_ms).max(1) as f64;
        LEFT + (ts - self.from_ms) as f64 / span * (W - LEFT - RIGHT)
    }

    pub fn svg(&self) -> String {
        const H: f64 = 110.0;
        let (lo, hi) = self
            .points
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
        let lo = if lo > 0.0 { 0.0 } else { lo.min(0.0) };
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let step = tick_step(hi - lo);
        let (y_min, y_max) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let y = |v: f64| TOP + H - ((v - y_min) / (y_max - y_min)).clamp(0.0, 1.0) * H;
        let total_h = TOP + H + 34.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {W} {total_h}\" \
             width=\"{W}\" height=\"{total_h}\" font-size=\"11\" font-family=\"sans-serif\"><title>{}</title>",
            esc(self.title)
        );
        let (a0, a1) = (self.x(self.alert.0), self.x(self.alert.1));
        s += &format!(
            "<rect x=\"{a0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{H}\" fill=\"#fde2c4\"/>\
             <text x=\"{LEFT}\" y=\"{TOP}\" dy=\"-2\" fill=\"#154273\">{}</text>",
            (a1 - a0).max(2.0),
            esc(self.title),
        );
        s += &value_axis(H, (y_min, y_max, step), &esc(self.unit), y);
        s += &time_ticks(self.zone, self.from_ms, self.to_ms, TOP + H, |t| self.x(t));
        s += &time_title(self.time_title, self.zone, TOP + H);
        let as_readings: Vec<(i64, f64, bool)> =
            self.points.iter().map(|p| (p.0, p.1, true)).collect();
        for segment in segments(&as_readings) {
            let pts: Vec<String> = segment
                .iter()
                .map(|(ts, v, _)| format!("{:.1},{:.1}", self.x(*ts), y(*v)))
                .collect();
            s += &format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"#154273\" stroke-width=\"1.5\"/>",
                pts.join(" ")
            );
        }
        s + "</svg>"
    }
}

/// The station-contact timeline: the evidence of a communication alert. Every upload or heartbeat
/// is a tick; the alert's period (the silence) is shaded.
pub struct ContactChart<'a> {
    pub from_ms: i64,
    pub to_ms: i64,
    pub contacts: &'a [i64],
    pub alert: (i64, i64),
    pub zone: crate::base::time::Zone,
    /// The strip's label ("contact") and the time axis' title, in the page's language.
    pub label: &'a str,
    pub time_title: &'a str,
}

impl ContactChart<'_> {
    pub fn svg(&self) -> String {
        const H: f64 = 40.0;
        let span = (self.to_ms - self.from_ms).max(1) as f64;
        let x = |ts: i64| LEFT + (ts - self.from_ms) as f64 / span * (W - LEFT - RIGHT);
        let total_h = TOP + H + 34.0;
        let (a0, a1) = (x(self.alert.0), x(self.alert.1.min(self.to_ms)));
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {W} {total_h}\" \
             width=\"{W}\" height=\"{total_h}\" font-size=\"11\" font-family=\"sans-serif\">\
             <rect x=\"{a0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{H}\" fill=\"#fde2c4\"/>\
             <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            (a1 - a0).max(2.0),
            LEFT - 4.0,
            TOP + H / 2.0 + 4.0,
            esc(self.label),
            b = TOP + H,
            r = W - RIGHT
        );
        for ts in self.contacts {
            s += &format!(
                "<line class=\"contact\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#154273\" stroke-width=\"2\"/>",
                TOP + H,
                x = x(*ts)
            );
        }
        s += &time_ticks(self.zone, self.from_ms, self.to_ms, TOP + H, x);
        s += &time_title(self.time_title, self.zone, TOP + H);
        s + "</svg>"
    }
}

/// What the TAC chart shows.
pub struct TacChart<'a> {
    pub from_ms: i64,
    pub to_ms: i64,
    /// (ts, TAC g/dL, worn)
    pub readings: &'a [(i64, f64, bool)],
    pub threshold_g_dl: f64,
    /// The alert's own period, shaded.
    pub alert: (i64, i64),
    /// When the station was heard from.
    pub contacts: &'a [i64],
    /// Labels of the two strips (wear, contact), in the page's language.
    pub labels: (&'a str, &'a str),
    /// The zone the time axis is labelled in.
    pub zone: crate::base::time::Zone,
    /// The time axis' title in the page's language ("tijd"); the zone's name is added.
    pub time_title: &'a str,
    /// How each [`GapReason`] reads in the page's language: not worn, no contact, not uploaded
    /// yet.
    pub gap_labels: [&'a str; 3],
}

/// Why the curve has no readings for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The station was in contact during the gap, yet no reading covers it: the monitor was off
    /// or not worn.
    NotWorn,
    /// The station was silent during the gap and has been heard from since.
    NoContact,
    /// The station has not been heard from since the gap began: readings may still come.
    NotUploadedYet,
}

impl GapReason {
    fn index(self) -> usize {
        match self {
            Self::NotWorn => 0,
            Self::NoContact => 1,
            Self::NotUploadedYet => 2,
        }
    }
}

/// The stretches of `from..to` without readings (longer than twice the usual interval, 30
/// minutes when there are too few readings to tell), each with its reason judged from the
/// station's contacts.
pub fn gaps(
    from_ms: i64,
    to_ms: i64,
    readings: &[(i64, f64, bool)],
    contacts: &[i64],
) -> Vec<(i64, i64, GapReason)> {
    let mut steps: Vec<i64> = readings.windows(2).map(|w| w[1].0 - w[0].0).collect();
    steps.sort_unstable();
    let usual = steps
        .get(steps.len() / 2)
        .copied()
        .filter(|u| *u > 0)
        .unwrap_or(30 * 60_000);
    let mut edges = vec![from_ms - usual];
    edges.extend(readings.iter().map(|r| r.0));
    edges.push(to_ms + usual);
    edges
        .windows(2)
        .filter(|w| w[1] - w[0] > 2 * usual)
        .map(|w| {
            let (start, end) = ((w[0] + usual).max(from_ms), w[1].min(to_ms));
            let during = contacts.iter().any(|c| (start..=end).contains(c));
            let after = contacts.iter().any(|c| *c > end);
            let reason = if during {
                GapReason::NotWorn
            } else if after {
                GapReason::NoContact
            } else {
                GapReason::NotUploadedYet
            };
            (start, end, reason)
        })
        .filter(|(start, end, _)| end > start)
        .collect()
}

/// A round step for about four ticks up to `max`: 1, 2, 2.5 or 5 times a power of ten.
pub fn tick_step(max: f64) -> f64 {
    let raw = (max / 4.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Decimals a tick value of `step` needs (0.025 → 3, 0.02 → 2).
pub fn decimals(step: f64) -> usize {
    (0..6)
        .find(|d| {
            let scaled = step * 10f64.powi(*d as i32);
            (scaled - scaled.round()).abs() < 1e-9
        })
        .unwrap_or(6)
}

/// Readings further apart than twice their usual interval are not joined: the line breaks where
/// nothing was measured.
fn segments(readings: &[(i64, f64, bool)]) -> Vec<&[(i64, f64, bool)]> {
    let mut gaps: Vec<i64> = readings.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    let usual = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..readings.len() {
        if usual > 0 && readings[i].0 - readings[i - 1].0 > 2 * usual {
            out.push(&readings[start..i]);
            start = i;
        }
    }
    if start < readings.len() {
        out.push(&readings[start..]);
    }
    out
}

impl TacChart<'_> {
    fn x(&self, ts: i64) -> f64 {
        let span = (self.to_ms - self.from_ms).max(1) as f64;
        LEFT + (ts - self.from_ms) as f64 / span * (W - LEFT - RIGHT)
    }

    pub fn svg(&self) -> String {
        let highest = self
            .readings
            .iter()
            .map(|r| r.1)
            .fold(self.threshold_g_dl * 2.0, f64::max);
        let step = tick_step(highest);
        let y_max = (highest / step).ceil() * step;
        let y = |v: f64| TOP + PLOT_H - (v / y_max).clamp(0.0, 1.0) * PLOT_H;
        let total_h = TOP + PLOT_H + STRIPS_BELOW + 2.0 * (STRIP_H + 6.0) + 4.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {W} {total_h}\" \
             width=\"{W}\" height=\"{total_h}\" font-size=\"11\" font-family=\"sans-serif\">"
        );
        // The alert's period.
        let (a0, a1) = (self.x(self.alert.0), self.x(self.alert.1));
        s += &format!(
            "<rect x=\"{a0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{PLOT_H}\" fill=\"#fde2c4\"/>",
            (a1 - a0).max(2.0)
        );
        s += &value_axis(PLOT_H, (0.0, y_max, step), "TAC (g/dL)", y);
        s += &time_title(self.time_title, self.zone, TOP + PLOT_H);
        s += &time_ticks(self.zone, self.from_ms, self.to_ms, TOP + PLOT_H, |t| {
            self.x(t)
        });
        // Threshold.
        s += &format!(
            "<line x1=\"{LEFT}\" y1=\"{ty:.1}\" x2=\"{r}\" y2=\"{ty:.1}\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{r}\" y=\"{tl:.1}\" text-anchor=\"end\" fill=\"#c00\">{th} g/dL</text>",
            ty = y(self.threshold_g_dl),
            tl = y(self.threshold_g_dl) - 4.0,
            r = W - RIGHT,
            th = self.threshold_g_dl
        );
        // Gaps, hatched, each with its reason when there is room to write it.
        for (start, end, reason) in gaps(self.from_ms, self.to_ms, self.readings, self.contacts) {
            let (x0, x1) = (self.x(start), self.x(end));
            s += &format!(
                "<rect class=\"gap\" data-reason=\"{}\" x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{PLOT_H}\" \
                 fill=\"#9e9e9e\" fill-opacity=\"0.18\"><title>{}</title></rect>",
                reason.index(),
                (x1 - x0).max(1.0),
                esc(self.gap_labels[reason.index()])
            );
            if x1 - x0 > 70.0 {
                s += &format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
                    (x0 + x1) / 2.0,
                    TOP + 14.0,
                    esc(self.gap_labels[reason.index()])
                );
            }
        }
        // The TAC curve.
        for segment in segments(self.readings) {
            let points: Vec<String> = segment
                .iter()
                .map(|(ts, v, _)| format!("{:.1},{:.1}", self.x(*ts), y(*v)))
                .collect();
            s += &format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"#154273\" stroke-width=\"2\"/>",
                points.join(" ")
            );
        }
        // Wear strip: each reading stands for the time until the next one.
        let wear_y = TOP + PLOT_H + STRIPS_BELOW;
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            wear_y + STRIP_H - 3.0,
            esc(self.labels.0)
        );
        for (i, (ts, _, worn)) in self.readings.iter().enumerate() {
            let next = self
                .readings
                .get(i + 1)
                .map(|r| r.0)
                .unwrap_or(ts + 1_800_000)
                .min(self.to_ms);
            let (x0, x1) = (self.x(*ts), self.x(next));
            s += &format!(
                "<rect x=\"{x0:.1}\" y=\"{wear_y:.1}\" width=\"{:.1}\" height=\"{STRIP_H}\" fill=\"{}\"/>",
                (x1 - x0).max(1.0),
                if *worn { "#2e7d32" } else { "#bbb" }
            );
        }
        // Contact strip.
        let contact_y = wear_y + STRIP_H + 6.0;
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            contact_y + STRIP_H - 3.0,
            esc(self.labels.1)
        );
        for ts in self.contacts {
            let x = self.x(*ts);
            s += &format!(
                "<line x1=\"{x:.1}\" y1=\"{contact_y:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#154273\"/>",
                contact_y + STRIP_H
            );
        }
        s += "</svg>";
        s
    }
}

/// One value per local day as bars (the wristband's daily indicators on the person page): a
/// round scale, the unit as the axis' title, a date under every bar that has room, nothing drawn
/// for a day without a value (a gap, not a zero).
pub struct DailyChart<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub from: chrono::NaiveDate,
    /// Inclusive.
    pub to: chrono::NaiveDate,
    pub values: &'a [(chrono::NaiveDate, f64)],
}

impl DailyChart<'_> {
    pub fn svg(&self) -> String {
        const H: f64 = 120.0;
        let days = (self.to - self.from).num_days().max(0) as usize + 1;
        let highest = self.values.iter().map(|v| v.1).fold(0.0, f64::max);
        let step = tick_step(if highest > 0.0 { highest } else { 1.0 });
        let y_max = ((highest / step).ceil() * step).max(step);
        let y = |v: f64| TOP + H - (v / y_max).clamp(0.0, 1.0) * H;
        let slot = (W - LEFT - RIGHT) / days as f64;
        let total_h = TOP + H + 34.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {W} {total_h}\" \
             width=\"{W}\" height=\"{total_h}\" font-size=\"11\" font-family=\"sans-serif\">\
             <title>{}</title>",
            esc(self.title)
        );
        s += &value_axis(
            H,
            (0.0, y_max, step),
            &format!("{} ({})", esc(self.title), esc(self.unit)),
            y,
        );
        // A date label every so many days, so labels never overlap (about 60 px each).
        let every = ((60.0 / slot).ceil() as usize).max(1);
        for (i, day) in self.from.iter_days().take(days).enumerate() {
            let x = LEFT + slot * i as f64;
            if let Some((_, v)) = self.values.iter().find(|(d, _)| *d == day) {
                s += &format!(
                    "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#154273\"><title>{day}: {v:.2} {}</title></rect>",
                    x + slot * 0.15,
                    y(*v),
                    slot * 0.7,
                    TOP + H - y(*v),
                    esc(self.unit)
                );
            }
            if i % every == 0 {
                s += &format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    x + slot / 2.0,
                    TOP + H + 16.0,
                    day.format("%d-%m")
                );
            }
        }
        s + "</svg>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daily_chart_draws_one_bar_per_day_with_a_value_and_a_round_scale() {
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let values = [(day(2), 61.5), (day(3), 72.0), (day(5), 80.0)];
        let svg = DailyChart {
            title: "hartslag <gem.>",
            unit: "bpm",
            from: day(1),
            to: day(7),
            values: &values,
        }
        .svg();
        assert_eq!(
            svg.matches("class=\"bar\"").count(),
            3,
            "no bar for a day without a value"
        );
        assert!(svg.contains("hartslag &lt;gem.&gt; (bpm)"));
        for tick in [">0<", ">20<", ">40<", ">60<", ">80<"] {
            assert!(svg.contains(tick), "{tick} missing");
        }
        assert!(svg.contains(">01-11<") && svg.contains(">07-11<"));
    }

    #[test]
    fn gaps_are_named_by_what_the_station_did_meanwhile() {
        let h = crate::base::time::HOUR_MS;
        // Readings every 30 min over 0–4 h, 8–12 h and 16–18 h of a 24 h window.
        let readings: Vec<(i64, f64, bool)> = (0..8)
            .chain(16..24)
            .chain(32..36)
            .map(|i| (i * h / 2, 0.0, true))
            .collect();
        // The station was heard at 6 h (inside the first gap) and at 16.5 h (after the second),
        // and not after.
        let found = gaps(0, 24 * h, &readings, &[6 * h, 33 * h / 2]);
        let reasons: Vec<GapReason> = found.iter().map(|g| g.2).collect();
        assert_eq!(
            reasons,
            vec![
                GapReason::NotWorn,
                GapReason::NoContact,
                GapReason::NotUploadedYet
            ]
        );
        assert_eq!((found[0].0, found[0].1), (4 * h, 8 * h));
        assert_eq!((found[1].0, found[1].1), (12 * h, 16 * h));
        assert_eq!(found[2].1, 24 * h, "the last gap runs to the window's end");
        assert!(gaps(0, 4 * h, &readings[..8], &[]).is_empty(), "no gap");
    }

    #[test]
    fn ticks_are_round_and_gaps_break_the_line() {
        assert_eq!(tick_step(0.055), 0.02);
        assert_eq!(tick_step(0.04), 0.01);
        assert_eq!(tick_step(0.09), 0.025);
        assert_eq!(decimals(0.025), 3);
        assert_eq!(decimals(0.02), 2);
        let h = crate::base::time::HOUR_MS;
        let mut readings: Vec<(i64, f64, bool)> = (0..10).map(|i| (i * h / 2, 0.0, true)).collect();
        readings.extend((16..20).map(|i| (i * h / 2, 0.0, true)));
        let parts = segments(&readings);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![10, 4]
        );
    }

    #[test]
    fn the_curve_the_threshold_and_the_strips_are_drawn_inside_the_frame() {
        let h = crate::base::time::HOUR_MS;
        let readings: Vec<(i64, f64, bool)> = (0..48)
            .map(|i| {
                (
                    i * h / 2,
                    if (20..30).contains(&i) { 0.05 } else { 0.0 },
                    i != 40,
                )
            })
            .collect();
        let chart = TacChart {
            from_ms: 0,
            to_ms: 24 * h,
            readings: &readings,
            threshold_g_dl: 0.02,
            alert: (10 * h, 15 * h),
            contacts: &[h, 5 * h],
            labels: ("wear <worn>", "contact"),
            zone: crate::base::time::Zone::UTC,
            time_title: "tijd",
            gap_labels: ["niet gedragen", "geen contact", "nog niet ontvangen"],
        }
        .svg();
        assert!(chart.starts_with("<svg") && chart.ends_with("</svg>"));
        assert_eq!(chart.matches("<polyline").count(), 1);
        assert!(chart.contains("stroke=\"#c00\""), "threshold line");
        assert_eq!(
            chart.matches("fill=\"#bbb\"").count(),
            1,
            "one unworn reading"
        );
        assert!(chart.contains("wear &lt;worn&gt;"), "labels are escaped");
        assert!(
            chart.contains(">tijd (UTC)<"),
            "the time axis names its zone"
        );
        // Round ticks: 0.00, 0.02, … 0.06 for a peak of 0.05 over a threshold of 0.02.
        for tick in [">0.00<", ">0.02<", ">0.04<", ">0.06<"] {
            assert!(chart.contains(tick), "{tick} missing");
        }
        assert!(!chart.contains(">0.011<"), "odd ticks");
        // Every x coordinate of the curve lies within the plot.
        let pts = chart
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        for p in pts.split(' ') {
            let x: f64 = p.split(',').next().unwrap().parse().unwrap();
            assert!((LEFT..=W - RIGHT).contains(&x), "{x}");
        }
    }
}
