//! SQLite's dialect to PostgreSQL's, for the statements the store modules write once.
//!
//! The store modules write SQL in the subset both databases share, with SQLite's parameters
//! (`?1`, `?`). The few spellings that differ are rewritten here, on tokens (string literals,
//! quoted names and comments are left alone), once per statement text (the connection caches the
//! result with the prepared statement):
//!
//! | SQLite | PostgreSQL |
//! |---|---|
//! | `?1`, `?` | `$1`, `$n` |
//! | `INSERT OR IGNORE INTO t …` | `INSERT INTO t … ON CONFLICT DO NOTHING` |
//! | the types `REAL`, `INTEGER`, `BLOB` (in casts and tables) | `DOUBLE PRECISION`, `BIGINT`, `BYTEA` |
//! | `max(a, b)`, `min(a, b)` (two arguments) | `greatest(a, b)`, `least(a, b)` |
//! | `instr(s, t)` | `strpos(s, t)` |
//! | `json_each(?1)` (a JSON array parameter) | `json_array_elements_text($1::json) AS value` |
//!
//! Anything else that differs (JSON paths into the audit detail, dates) is written per backend in
//! the module that owns it, choosing on [`super::Backend`].

#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Word(&'a str),
    /// A parameter: `?N` carries N, a bare `?` carries `None`.
    Param(Option<u32>),
    /// Anything copied as it is: literals, quoted names, comments, numbers, punctuation, space.
    Other(&'a str),
}

fn tokens(sql: &str) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b'\'' | b'"' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == c {
                        // A doubled quote is an escaped quote inside the literal.
                        if i + 1 < bytes.len() && bytes[i + 1] == c {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                out.push(Token::Other(&sql[start..i]));
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                out.push(Token::Other(&sql[start..i]));
            }
            b'?' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                out.push(Token::Param(sql[start + 1..i].parse().ok()));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token::Word(&sql[start..i]));
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                out.push(Token::Other(&sql[start..i]));
            }
            _ => {
                // One character (a multi-byte one whole).
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
                out.push(Token::Other(&sql[start..i]));
            }
        }
    }
    out
}

fn is_space(t: &Token<'_>) -> bool {
    matches!(t, Token::Other(s) if s.trim().is_empty() || s.starts_with("--"))
}

/// The index of the next token after `i` that is not space or a comment.
fn next_solid(tokens: &[Token<'_>], i: usize) -> Option<usize> {
    (i + 1..tokens.len()).find(|&j| !is_space(&tokens[j]))
}

fn prev_solid(tokens: &[Token<'_>], i: usize) -> Option<usize> {
    (0..i).rev().find(|&j| !is_space(&tokens[j]))
}

fn word_is(t: &Token<'_>, w: &str) -> bool {
    matches!(t, Token::Word(s) if s.eq_ignore_ascii_case(w))
}

fn punct_is(t: &Token<'_>, p: &str) -> bool {
    matches!(t, Token::Other(s) if *s == p)
}

/// Whether the call whose `(` is at `open` has a comma at its own nesting level.
fn has_two_arguments(tokens: &[Token<'_>], open: usize) -> bool {
    let mut depth = 0;
    for t in &tokens[open..] {
        if punct_is(t, "(") {
            depth += 1;
        } else if punct_is(t, ")") {
            depth -= 1;
            if depth == 0 {
                return false;
            }
        } else if depth == 1 && punct_is(t, ",") {
            return true;
        }
    }
    false
}

/// The statement in PostgreSQL's spelling.
pub fn to_postgres(sql: &str) -> String {
    let tokens = tokens(sql);
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next_param = 0u32;
    let mut on_conflict_pending = false;
    let mut depth = 0i32;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match t {
            Token::Param(n) => {
                let n = n.unwrap_or(next_param + 1);
                next_param = next_param.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            Token::Word(w) => {
                let next = next_solid(&tokens, i);
                let next_is_open = next.is_some_and(|j| punct_is(&tokens[j], "("));
                if word_is(t, "OR")
                    && prev_solid(&tokens, i).is_some_and(|j| word_is(&tokens[j], "INSERT"))
                    && next.is_some_and(|j| word_is(&tokens[j], "IGNORE"))
                {
                    on_conflict_pending = true;
                    i = next.unwrap() + 1;
                    // Drop the space after IGNORE too; INSERT's own space stays.
                    if i < tokens.len() && is_space(&tokens[i]) {
                        i += 1;
                    }
                    continue;
                } else if word_is(t, "RETURNING") && on_conflict_pending && depth == 0 {
                    out.push_str("ON CONFLICT DO NOTHING ");
                    on_conflict_pending = false;
                    out.push_str(w);
                } else if word_is(t, "REAL") {
                    out.push_str("DOUBLE PRECISION");
                } else if word_is(t, "INTEGER") {
                    out.push_str("BIGINT");
                } else if word_is(t, "BLOB") {
                    out.push_str("BYTEA");
                } else if next_is_open && word_is(t, "instr") {
                    out.push_str("strpos");
                } else if next_is_open
                    && (word_is(t, "max") || word_is(t, "min"))
                    && has_two_arguments(&tokens, next.unwrap())
                {
                    out.push_str(if word_is(t, "max") {
                        "greatest"
                    } else {
                        "least"
                    });
                } else if next_is_open && word_is(t, "json_each") {
                    // json_each(?N) → json_array_elements_text($N::json) AS value
                    let open = next.unwrap();
                    let param = next_solid(&tokens, open);
                    let close = param.and_then(|p| next_solid(&tokens, p));
                    match (param.map(|p| &tokens[p]), close) {
                        (Some(Token::Param(n)), Some(c)) if punct_is(&tokens[c], ")") => {
                            let n = n.unwrap_or(next_param + 1);
                            next_param = next_param.max(n);
                            out.push_str(&format!("json_array_elements_text(${n}::json) AS value"));
                            i = c + 1;
                            continue;
                        }
                        _ => out.push_str(w),
                    }
                } else {
                    out.push_str(w);
                }
            }
            Token::Other(s) => {
                if *s == "(" {
                    depth += 1;
                } else if *s == ")" {
                    depth -= 1;
                }
                if on_conflict_pending && *s == ";" && depth == 0 {
                    out.push_str(" ON CONFLICT DO NOTHING");
                    on_conflict_pending = false;
                }
                out.push_str(s);
            }
        }
        i += 1;
    }
    if on_conflict_pending {
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push_str(" ON CONFLICT DO NOTHING");
    }
    out
}

/// The statement with every `?N IS [NOT] NULL` replaced by `TRUE`: PostgreSQL types a parameter
/// where it first meets it and cannot type one in `?2 IS NULL OR status = ?2`. Prepared once, this
/// shows the types the other uses give each parameter; the real statement is then prepared with
/// them.
pub fn without_null_tests(sql: &str) -> String {
    let tokens = tokens(sql);
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Token::Param(_) = tokens[i] {
            let is = next_solid(&tokens, i).filter(|&j| word_is(&tokens[j], "IS"));
            let not = is
                .and_then(|j| next_solid(&tokens, j))
                .filter(|&j| word_is(&tokens[j], "NOT"));
            let null = not
                .or(is)
                .and_then(|j| next_solid(&tokens, j))
                .filter(|&j| word_is(&tokens[j], "NULL"));
            if let (Some(_), Some(end)) = (is, null) {
                out.push_str("TRUE");
                i = end + 1;
                continue;
            }
        }
        match &tokens[i] {
            Token::Word(w) | Token::Other(w) => out.push_str(w),
            Token::Param(Some(n)) => {
                out.push('?');
                out.push_str(&n.to_string());
            }
            Token::Param(None) => out.push('?'),
        }
        i += 1;
    }
    to_postgres(&out)
}

#[cfg(test)]
mod tests {
    use super::{to_postgres, without_null_tests};

    #[test]
    fn null_tests_of_parameters_are_taken_out_for_typing() {
        assert_eq!(
            without_null_tests(
                "SELECT 1 WHERE (?1 IS NULL OR a = ?1) AND (?2 IS NOT NULL) AND b IS NULL"
            ),
            "SELECT 1 WHERE (TRUE OR a = $1) AND (TRUE) AND b IS NULL"
        );
    }

    #[test]
    fn numbered_and_bare_parameters_become_dollar_numbers() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?2 AND c = ?1"),
            "SELECT a FROM t WHERE b = $2 AND c = $1"
        );
        assert_eq!(
            to_postgres("INSERT INTO t (a, b) VALUES (?, ?)"),
            "INSERT INTO t (a, b) VALUES ($1, $2)"
        );
    }

    #[test]
    fn literals_and_comments_are_left_alone() {
        assert_eq!(
            to_postgres("SELECT 'a ? b', \"max\"(x) -- why ?1\nFROM t WHERE x = ?1"),
            "SELECT 'a ? b', \"max\"(x) -- why ?1\nFROM t WHERE x = $1"
        );
        assert_eq!(
            to_postgres("SELECT 'it''s ?' WHERE a = ?"),
            "SELECT 'it''s ?' WHERE a = $1"
        );
    }

    #[test]
    fn insert_or_ignore_becomes_on_conflict_do_nothing() {
        assert_eq!(
            to_postgres("INSERT OR IGNORE INTO t (a) VALUES (?1)"),
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            to_postgres("INSERT OR IGNORE INTO t (a) VALUES (?1) RETURNING id"),
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id"
        );
        assert_eq!(
            to_postgres("insert or ignore into t (a) select (x) from u;\n"),
            "insert into t (a) select (x) from u ON CONFLICT DO NOTHING;\n"
        );
    }

    #[test]
    fn two_argument_max_and_min_become_greatest_and_least() {
        assert_eq!(
            to_postgres("SELECT max(a), min(b, max(c, ?1)), max(coalesce(d, 0)) FROM t"),
            "SELECT max(a), least(b, greatest(c, $1)), max(coalesce(d, 0)) FROM t"
        );
    }

    #[test]
    fn casts_instr_and_json_each() {
        assert_eq!(
            to_postgres("SELECT CAST(a AS REAL), CAST(b AS INTEGER) FROM t WHERE instr(x, ?1) > 0"),
            "SELECT CAST(a AS DOUBLE PRECISION), CAST(b AS BIGINT) FROM t WHERE strpos(x, $1) > 0"
        );
        assert_eq!(
            to_postgres("DELETE FROM t WHERE id IN (SELECT CAST(value AS INTEGER) FROM json_each(?2))"),
            "DELETE FROM t WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_array_elements_text($2::json) AS value)"
        );
    }
}
