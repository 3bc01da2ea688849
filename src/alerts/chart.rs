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
        // Axes, y ticks.
        s += &format!(
            "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#333\"/>\
             <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/>",
            b = TOP + PLOT_H,
            r = W - RIGHT
        );
        let places = decimals(step);
        let ticks = (y_max / step).round() as usize;
        for i in 0..=ticks {
            let v = step * i as f64;
            s += &format!(
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.places$}</text>",
                LEFT - 4.0,
                y(v) + 4.0
            );
        }
        // The unit as the axis' title, turned along it, clear of the tick labels.
        s += &format!(
            "<text x=\"10\" y=\"{mid:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 10 {mid:.1})\">TAC (g/dL)</text>",
            mid = TOP + PLOT_H / 2.0
        );
        s += &format!(
            "<text x=\"{r}\" y=\"{ty}\" text-anchor=\"end\" fill=\"#555\">{} ({})</text>",
            esc(self.time_title),
            esc(self.zone.name()),
            r = W - RIGHT,
            ty = TOP + PLOT_H + 30.0
        );
        // x ticks at local 00:00, 06:00, 12:00 and 18:00 (daylight saving included).
        let mut ticks = Vec::new();
        let mut day = self.zone.date_of(self.from_ms);
        while self.zone.day_start_ms(day) < self.to_ms {
            for hour in [0, 6, 12, 18] {
                let t = self.zone.at(day, hour);
                if t > self.from_ms && t < self.to_ms {
                    ticks.push(t);
                }
            }
            day = day.succ_opt().unwrap_or(day);
        }
        for t in ticks {
            let label = self.zone.format(t, "%d-%m %H:%M");
            s += &format!(
                "<line x1=\"{x:.1}\" y1=\"{b}\" x2=\"{x:.1}\" y2=\"{b2}\" stroke=\"#333\"/>\
                 <text x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>",
                x = self.x(t),
                b = TOP + PLOT_H,
                b2 = TOP + PLOT_H + 4.0,
                ty = TOP + PLOT_H + 16.0
            );
        }
        // Threshold.
        s += &format!(
            "<line x1=\"{LEFT}\" y1=\"{ty:.1}\" x2=\"{r}\" y2=\"{ty:.1}\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{r}\" y=\"{tl:.1}\" text-anchor=\"end\" fill=\"#c00\">{th} g/dL</text>",
            ty = y(self.threshold_g_dl),
            tl = y(self.threshold_g_dl) - 4.0,
            r = W - RIGHT,
            th = self.threshold_g_dl
        );
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

#[cfg(test)]
mod tests {
    use super::*;

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
