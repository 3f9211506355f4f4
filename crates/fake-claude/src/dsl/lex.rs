//! The scenario language's words and units: splitting a line into shell-like words,
//! and reading byte counts (`64MiB`) and millisecond durations (`2s`).

/// Splits a line into words: whitespace separates; `"..."` with `\n \t \r \\ \" \0`
/// escapes; `'...'` literal.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        None => return Err("unterminated \"quote\"".into()),
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some('n') => cur.push('\n'),
                            Some('t') => cur.push('\t'),
                            Some('r') => cur.push('\r'),
                            Some('0') => cur.push('\0'),
                            Some('\\') => cur.push('\\'),
                            Some('"') => cur.push('"'),
                            Some(o) => {
                                cur.push('\\');
                                cur.push(o)
                            }
                            None => return Err("unterminated \"quote\"".into()),
                        },
                        Some(o) => cur.push(o),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        None => return Err("unterminated 'quote'".into()),
                        Some('\'') => break,
                        Some(o) => cur.push(o),
                    }
                }
            }
            o => {
                in_word = true;
                cur.push(o)
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Parses a byte count: `1024`, `64KiB`, `20MiB`, `1GiB`, `5M`, `2k`, `1GB`.
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size '{s}'"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("bad size unit in '{s}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large '{s}'"))
}

/// Parses a duration in milliseconds: `500`, `500ms`, `2s`.
pub fn millis(s: &str) -> Result<u64, String> {
    let bad = || format!("bad duration '{s}' (use 500, 500ms or 2s)");
    if let Some(n) = s.strip_suffix("ms") {
        n.parse().map_err(|_| bad())
    } else if let Some(n) = s.strip_suffix('s') {
        n.parse::<u64>()
            .map(|v| v.saturating_mul(1000))
            .map_err(|_| bad())
    } else {
        s.parse().map_err(|_| bad())
    }
}
