//! A small document model written as PDF on the server (pdf-writer): headings, paragraphs,
//! label–value pairs, monospace lines (hashes), tables and a line chart, laid out on A4 pages
//! that each carry a running header (the case reference) and "page i of n".
//!
//! Text is set in the standard Helvetica and Courier fonts with WinAnsi encoding: nothing to
//! embed, and every letter of Dutch is covered. Widths come from the fonts' metrics, close
//! enough for wrapping; characters outside WinAnsi are replaced (arrows become "->").

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const TOP: f32 = HEIGHT - 72.0;
const BOTTOM: f32 = 64.0;
const BODY: f32 = 10.0;

pub struct Document {
    pub title: String,
    /// Printed at the top of every page (the case reference and the alert).
    pub running_header: String,
    pub blocks: Vec<Block>,
}

pub enum Block {
    Heading(String),
    Paragraph(String),
    /// Label and value, one pair a line (the value wraps).
    Pairs(Vec<(String, String)>),
    /// Fixed-width lines, e.g. hashes.
    Mono(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Chart(Chart),
}

/// A line chart: points (x, y), a labelled horizontal threshold, a shaded x interval.
pub struct Chart {
    pub points: Vec<(f64, f64)>,
    pub x_range: (f64, f64),
    pub y_max: f64,
    pub threshold: Option<(f64, String)>,
    pub shade: Option<(f64, f64)>,
    /// Labels under the x axis at x positions.
    pub x_ticks: Vec<(f64, String)>,
    pub y_label: String,
    pub x_label: String,
}

/// What a page draws, decided before the page count is known.
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        font: Font,
        text: String,
    },
    Line {
        from: (f32, f32),
        to: (f32, f32),
        width: f32,
        gray: f32,
        dash: bool,
    },
    Polyline(Vec<(f32, f32)>),
    Fill {
        rect: (f32, f32, f32, f32),
        gray: f32,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
    Mono,
}

impl Font {
    fn name(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
            Font::Mono => Name(b"F3"),
        }
    }
}

struct Layout {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Self {
            pages: vec![Vec::new()],
            y: TOP,
        }
    }

    /// Room for `height` more points, on a new page if this one is full.
    fn need(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.pages.push(Vec::new());
            self.y = TOP;
        }
    }

    fn op(&mut self, op: Op) {
        self.pages.last_mut().expect("a page").push(op);
    }

    fn text(&mut self, x: f32, size: f32, font: Font, text: &str) {
        let y = self.y;
        self.op(Op::Text {
            x,
            y,
            size,
            font,
            text: text.to_string(),
        });
    }

    /// Wrapped lines at `x`, `width` wide.
    fn lines(&mut self, x: f32, width: f32, size: f32, font: Font, text: &str) {
        for line in wrap(text, width, size, font) {
            self.need(size * 1.4);
            self.y -= size * 1.4;
            self.text(x, size, font, &line);
        }
    }
}

/// The PDF bytes of `doc`; `page_label(i, n)` says "page i of n" in the reader's language.
pub fn render(doc: &Document, page_label: impl Fn(usize, usize) -> String) -> Vec<u8> {
    let mut l = Layout::new();
    l.need(30.0);
    l.y -= 18.0;
    l.text(MARGIN, 16.0, Font::Bold, &doc.title);
    l.y -= 6.0;
    let inner = WIDTH - 2.0 * MARGIN;
    for block in &doc.blocks {
        match block {
            Block::Heading(h) => {
                l.need(40.0);
                l.y -= 22.0;
                l.text(MARGIN, 12.5, Font::Bold, h);
                l.y -= 2.0;
            }
            Block::Paragraph(p) => {
                l.lines(MARGIN, inner, BODY, Font::Regular, p);
                l.y -= 4.0;
            }
            Block::Pairs(pairs) => {
                let label_width = 190.0;
                for (label, value) in pairs {
                    let labels = wrap(label, label_width - 10.0, BODY, Font::Bold);
                    let values = wrap(value, inner - label_width, BODY, Font::Regular);
                    let rows = labels.len().max(values.len()).max(1);
                    l.need(BODY * 1.4 * rows as f32);
                    let top = l.y;
                    for (x, lines, font) in [
                        (MARGIN, &labels, Font::Bold),
                        (MARGIN + label_width, &values, Font::Regular),
                    ] {
                        l.y = top;
                        for line in lines {
                            l.y -= BODY * 1.4;
                            l.text(x, BODY, font, line);
                        }
                    }
                    l.y = top - BODY * 1.4 * rows as f32;
                }
                l.y -= 4.0;
            }
            Block::Mono(lines) => {
                for line in lines {
                    l.lines(MARGIN, inner, 8.0, Font::Mono, line);
                }
                l.y -= 4.0;
            }
            Block::Table { header, rows } => table(&mut l, inner, header, rows),
            Block::Chart(chart) => draw_chart(&mut l, inner, chart),
        }
    }
    write(doc, l.pages, page_label)
}

fn table(l: &mut Layout, inner: f32, header: &[String], rows: &[Vec<String>]) {
    let columns = header.len().max(1);
    let width = inner / columns as f32;
    let row = |l: &mut Layout, cells: &[String], font: Font| {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .map(|c| wrap(c, width - 6.0, 9.0, font))
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * 12.0;
        l.need(height + 4.0);
        let top = l.y;
        for (i, cell) in wrapped.iter().enumerate() {
            l.y = top;
            for line in cell {
                l.y -= 12.0;
                l.text(MARGIN + i as f32 * width, 9.0, font, line);
            }
        }
        l.y = top - height - 3.0;
        let y = l.y + 1.0;
        l.op(Op::Line {
            from: (MARGIN, y),
            to: (MARGIN + inner, y),
            width: 0.3,
            gray: 0.6,
            dash: false,
        });
    };
    row(l, header, Font::Bold);
    for r in rows {
        row(l, r, Font::Regular);
    }
    l.y -= 4.0;
}

fn draw_chart(l: &mut Layout, inner: f32, c: &Chart) {
    let (height, left) = (170.0, 40.0);
    l.need(height + 50.0);
    l.y -= 14.0;
    l.text(MARGIN, 8.5, Font::Regular, &c.y_label);
    let top = l.y - 6.0;
    let bottom = top - height;
    let (x0, x1) = (MARGIN + left, MARGIN + inner);
    let span = (c.x_range.1 - c.x_range.0).max(1.0);
    let y_max = if c.y_max > 0.0 { c.y_max } else { 1.0 };
    let px = |x: f64| x0 + ((x - c.x_range.0) / span) as f32 * (x1 - x0);
    let py = |y: f64| bottom + (y / y_max).clamp(0.0, 1.0) as f32 * height;
    if let Some((from, to)) = c.shade {
        let (a, b) = (px(from.max(c.x_range.0)), px(to.min(c.x_range.1)));
        l.op(Op::Fill {
            rect: (a, bottom, (b - a).max(1.0), height),
            gray: 0.9,
        });
    }
    // Axes and the y scale: 0, half and the top.
    for (from, to) in [((x0, bottom), (x1, bottom)), ((x0, bottom), (x0, top))] {
        l.op(Op::Line {
            from,
            to,
            width: 0.7,
            gray: 0.0,
            dash: false,
        });
    }
    for fraction in [0.0, 0.5, 1.0] {
        let y = bottom + fraction as f32 * height;
        let value = y_max * fraction;
        l.op(Op::Text {
            x: MARGIN,
            y: y - 3.0,
            size: 8.0,
            font: Font::Regular,
            text: format!("{value:.3}").replace('.', ","),
        });
    }
    if let Some((value, label)) = &c.threshold {
        let y = py(*value);
        l.op(Op::Line {
            from: (x0, y),
            to: (x1, y),
            width: 0.8,
            gray: 0.35,
            dash: true,
        });
        l.op(Op::Text {
            x: x1 - 150.0,
            y: y + 3.0,
            size: 8.0,
            font: Font::Regular,
            text: label.clone(),
        });
    }
    // One polyline per run of points without a gap of more than a tenth of the span.
    let mut run: Vec<(f32, f32)> = Vec::new();
    let mut last_x = None;
    for &(x, y) in &c.points {
        if last_x.is_some_and(|lx: f64| x - lx > span / 10.0) && run.len() > 1 {
            l.op(Op::Polyline(std::mem::take(&mut run)));
        } else if last_x.is_some_and(|lx: f64| x - lx > span / 10.0) {
            run.clear();
        }
        run.push((px(x), py(y)));
        last_x = Some(x);
    }
    if run.len() > 1 {
        l.op(Op::Polyline(run));
    }
    for (x, label) in &c.x_ticks {
        let at = px(*x);
        l.op(Op::Line {
            from: (at, bottom),
            to: (at, bottom - 3.0),
            width: 0.5,
            gray: 0.0,
            dash: false,
        });
        l.op(Op::Text {
            x: at - 12.0,
            y: bottom - 12.0,
            size: 7.5,
            font: Font::Regular,
            text: label.clone(),
        });
    }
    l.y = bottom - 26.0;
    l.text(x0, 8.5, Font::Regular, &c.x_label);
    l.y -= 6.0;
}

fn write(
    doc: &Document,
    pages: Vec<Vec<Op>>,
    page_label: impl Fn(usize, usize) -> String,
) -> Vec<u8> {
    let n = pages.len();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let fonts = [Ref::new(3), Ref::new(4), Ref::new(5)];
    let info = Ref::new(6);
    let first_page = 7;
    let page_ids: Vec<Ref> = (0..n)
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(n as i32);
    for (id, name) in fonts
        .iter()
        .zip([&b"Helvetica"[..], b"Helvetica-Bold", b"Courier"])
    {
        pdf.type1_font(*id)
            .base_font(Name(name))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    pdf.document_info(info)
        .title(pdf_writer::TextStr(&doc.title))
        .producer(pdf_writer::TextStr("nachtwacht"));
    for (i, ops) in pages.into_iter().enumerate() {
        let content_id = Ref::new(first_page + 2 * i as i32 + 1);
        let mut page = pdf.page(page_ids[i]);
        page.parent(tree)
            .media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT))
            .contents(content_id);
        let mut resources = page.resources();
        let mut f = resources.fonts();
        for (font, id) in [Font::Regular, Font::Bold, Font::Mono].iter().zip(fonts) {
            f.pair(font.name(), id);
        }
        f.finish();
        resources.finish();
        page.finish();

        let mut c = Content::new();
        // Running header and footer on every page.
        let mut chrome = vec![
            Op::Text {
                x: MARGIN,
                y: HEIGHT - 40.0,
                size: 8.5,
                font: Font::Regular,
                text: doc.running_header.clone(),
            },
            Op::Line {
                from: (MARGIN, HEIGHT - 46.0),
                to: (WIDTH - MARGIN, HEIGHT - 46.0),
                width: 0.4,
                gray: 0.5,
                dash: false,
            },
            Op::Text {
                x: WIDTH - MARGIN - 80.0,
                y: 36.0,
                size: 8.5,
                font: Font::Regular,
                text: page_label(i + 1, n),
            },
        ];
        chrome.extend(ops);
        for op in &chrome {
            draw(&mut c, op);
        }
        pdf.stream(content_id, &c.finish());
    }
    pdf.finish()
}

fn draw(c: &mut Content, op: &Op) {
    match op {
        Op::Text {
            x,
            y,
            size,
            font,
            text,
        } => {
            c.begin_text();
            c.set_font(font.name(), *size);
            c.next_line(*x, *y);
            c.show(Str(&win_ansi(text)));
            c.end_text();
        }
        Op::Line {
            from,
            to,
            width,
            gray,
            dash,
        } => {
            c.save_state();
            c.set_line_width(*width);
            c.set_stroke_gray(*gray);
            if *dash {
                c.set_dash_pattern([4.0, 3.0], 0.0);
            }
            c.move_to(from.0, from.1);
            c.line_to(to.0, to.1);
            c.stroke();
            c.restore_state();
        }
        Op::Polyline(points) => {
            c.save_state();
            c.set_line_width(1.1);
            c.set_stroke_rgb(0.1, 0.3, 0.7);
            c.move_to(points[0].0, points[0].1);
            for p in &points[1..] {
                c.line_to(p.0, p.1);
            }
            c.stroke();
            c.restore_state();
        }
        Op::Fill { rect, gray } => {
            c.save_state();
            c.set_fill_gray(*gray);
            c.rect(rect.0, rect.1, rect.2, rect.3);
            c.fill_nonzero();
            c.restore_state();
        }
    }
}

/// The text in WinAnsi (Windows-1252): Latin-1 as is, the typographic marks at their places,
/// arrows as "->", anything else as "?".
pub fn win_ansi(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\u{20}'..='\u{7e}' => out.push(ch as u8),
            '\u{a0}'..='\u{ff}' => out.push(ch as u32 as u8),
            '€' => out.push(0x80),
            '…' => out.push(0x85),
            '‘' => out.push(0x91),
            '’' => out.push(0x92),
            '“' => out.push(0x93),
            '”' => out.push(0x94),
            '•' => out.push(0x95),
            '–' => out.push(0x96),
            '—' => out.push(0x97),
            '→' => out.extend_from_slice(b"->"),
            '\t' | '\n' | '\r' => out.push(b' '),
            _ => out.push(b'?'),
        }
    }
    out
}

/// Approximate advance of a character in thousandths of an em (Helvetica's metrics in classes;
/// Courier is fixed at 600).
fn advance(ch: char, font: Font) -> f32 {
    if font == Font::Mono {
        return 600.0;
    }
    let base = match ch {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 240.0,
        'f' | 't' | 'r' | 'I' | ' ' | '(' | ')' | '[' | ']' | '-' | '/' => 300.0,
        'm' | 'w' | 'M' | 'W' | '@' => 850.0,
        'A'..='Z' => 690.0,
        _ => 556.0,
    };
    if font == Font::Bold {
        base * 1.06
    } else {
        base
    }
}

fn text_width(text: &str, size: f32, font: Font) -> f32 {
    text.chars().map(|c| advance(c, font)).sum::<f32>() * size / 1000.0
}

/// Lines of at most `width` points; a word longer than a line is cut.
fn wrap(text: &str, width: f32, size: f32, font: Font) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if text_width(&candidate, size, font) <= width || line.is_empty() {
                line = candidate;
            } else {
                lines.push(std::mem::take(&mut line));
                line = word.to_string();
            }
            while text_width(&line, size, font) > width && line.chars().count() > 1 {
                let mut cut = line.clone();
                while text_width(&cut, size, font) > width && cut.chars().count() > 1 {
                    cut.pop();
                }
                let rest = line[cut.len()..].to_string();
                lines.push(cut);
                line = rest;
            }
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_break_and_every_page_carries_the_header_and_its_number() {
        let doc = Document {
            title: "Rapport niet-naleving".into(),
            running_header: "Zaak CASE-ÉÉN · melding 7".into(),
            blocks: (0..120)
                .map(|i| {
                    Block::Paragraph(format!(
                        "Regel {i}: gemiddelde stijging 0,012 g/dL per uur → gedronken"
                    ))
                })
                .collect(),
        };
        let bytes = render(&doc, |i, n| format!("Pagina {i} van {n}"));
        assert!(bytes.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&bytes);
        let pages = text.matches("/Type /Page\n").count() + text.matches("/Type /Page ").count();
        assert!(
            text.contains("Pagina 1 van 3") || text.contains("Pagina 1 van 4"),
            "{pages}"
        );
        let n = (1..10)
            .find(|n| !text.contains(&format!("Pagina {n} van")))
            .unwrap()
            - 1;
        assert!(n >= 3, "{n} pages");
        assert_eq!(
            text.matches(&format!(" van {n})")).count(),
            n,
            "every page numbered"
        );
        // The header on every page: not ASCII (É is 0xC9 in WinAnsi), so a hex string.
        let header = hex::encode(win_ansi("Zaak CASE-ÉÉN · melding 7"));
        let count = text.to_lowercase().matches(&format!("<{header}>")).count();
        assert_eq!(count, n);
        // Arrows become "->": nothing outside WinAnsi reaches the file.
        assert!(text.contains("per uur -> gedronken"));
    }

    #[test]
    fn wrapping_keeps_every_word_within_the_width() {
        let text =
            "De drempel van 0,020 g/dL werd overschreden gedurende drie opeenvolgende metingen";
        let lines = wrap(text, 150.0, 10.0, Font::Regular);
        assert!(lines.len() > 1);
        assert_eq!(lines.join(" "), text);
        for l in &lines {
            assert!(text_width(l, 10.0, Font::Regular) <= 150.0, "{l}");
        }
    }
}
