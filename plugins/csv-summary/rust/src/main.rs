//! `csv-summary CHAT_ID`: summarises the chat's `.csv` attachments into a
//! `summary.md` attachment and appends a line to its history (the format
//! is in `plugins/csv-summary/README.md`).

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "chatstore:storage/plugin-imports",
        generate_all,
    });
}

/// A column's min, max and mean, if every value of it is a number.
fn numeric(values: &[&str]) -> Option<(f64, f64, f64)> {
    let mut numbers = Vec::new();
    for value in values
        .iter()
        .map(|v| v.trim_matches(' '))
        .filter(|v| !v.is_empty())
    {
        if !is_number(value) {
            return None;
        }
        numbers.push(value.parse::<f64>().ok()?);
    }
    let first = *numbers.first()?;
    let (min, max) = numbers
        .iter()
        .fold((first, first), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    Some((min, max, numbers.iter().sum::<f64>() / numbers.len() as f64))
}

/// `-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?`
fn is_number(s: &str) -> bool {
    fn digits(s: &str) -> (usize, &str) {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n, &s[n..])
    }
    let s = s.strip_prefix('-').unwrap_or(s);
    let (n, mut rest) = digits(s);
    if n == 0 {
        return false;
    }
    if let Some(fraction) = rest.strip_prefix('.') {
        let (n, after) = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = after;
    }
    if let Some(exponent) = rest.strip_prefix(['e', 'E']) {
        let exponent = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        let (n, after) = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = after;
    }
    rest.is_empty()
}

/// One row of the summary for the CSV text `text` of the file `name`.
fn summary_row(name: &str, text: &str) -> String {
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty());
    let header: Vec<&str> = lines
        .next()
        .map(|h| h.split(',').collect())
        .unwrap_or_default();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut stats = Vec::new();
    for (i, column) in header.iter().enumerate() {
        let values: Vec<&str> = rows
            .iter()
            .map(|r| r.get(i).copied().unwrap_or(""))
            .collect();
        if let Some((min, max, mean)) = numeric(&values) {
            stats.push(format!(
                "{}: {min:.3} / {max:.3} / {mean:.3}",
                column.trim_matches(' ')
            ));
        }
    }
    let stats = if stats.is_empty() {
        "-".to_owned()
    } else {
        stats.join("; ")
    };
    format!("| {name} | {} | {} | {stats} |\n", rows.len(), header.len())
}

fn summary(rows: &[String]) -> String {
    let mut out = String::from(
        "# CSV summary\n\n| file | rows | columns | numeric columns: min / max / mean |\n|---|---|---|---|\n",
    );
    rows.iter().for_each(|row| out.push_str(row));
    out
}

#[cfg(target_arch = "wasm32")]
fn main() {
    use bindings::chatstore::storage::user_storage::{self as storage, Error};
    use bindings::wasi::io::streams::StreamError;

    fn fail(what: &str, e: Error) -> ! {
        eprintln!("csv-summary: {what}: {e:?}");
        std::process::exit(1);
    }

    let Some(chat) = std::env::args().nth(1) else {
        eprintln!("usage: csv-summary CHAT_ID");
        std::process::exit(1);
    };
    let store = storage::open().unwrap_or_else(|e| fail("open", e));
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_attachments(&chat, 100, after.as_deref())
            .unwrap_or_else(|e| fail("list", e));
        for file in page.data.iter().filter(|f| f.name.ends_with(".csv")) {
            let (_, stream) = store
                .read_attachment(&chat, &file.file_id)
                .unwrap_or_else(|e| fail("read", e));
            let mut bytes = Vec::new();
            loop {
                match stream.blocking_read(1 << 16) {
                    Ok(piece) => bytes.extend(piece),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        eprintln!(
                            "csv-summary: reading {}: {}",
                            file.name,
                            e.to_debug_string()
                        );
                        std::process::exit(1);
                    }
                }
            }
            rows.push(summary_row(&file.name, &String::from_utf8_lossy(&bytes)));
        }
        if !page.has_more {
            break;
        }
        after = page.last_id;
    }
    let text = summary(&rows);
    let outgoing = store
        .upload_attachment(&chat, "summary.md", Some("text/markdown"))
        .unwrap_or_else(|e| fail("upload", e));
    let body = outgoing.body().unwrap_or_else(|e| fail("upload", e));
    for piece in text.as_bytes().chunks(4096) {
        body.blocking_write_and_flush(piece)
            .unwrap_or_else(|_| fail("upload", Error::InvalidHistory("the stream closed".into())));
    }
    drop(body);
    storage::Outgoing::finish(outgoing).unwrap_or_else(|e| fail("upload", e));
    let line = format!(
        "csv-summary: {} CSV files summarised in summary.md\n",
        rows.len()
    );
    store
        .append_history(&chat, &line)
        .unwrap_or_else(|e| fail("history", e));
}

/// Natively, `csv-summary FILE…` prints the summary of those files: the
/// same format, to check it without a store.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let rows: Vec<String> = std::env::args()
        .skip(1)
        .map(|path| {
            let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let name = std::path::Path::new(&path).file_name().unwrap_or_default();
            summary_row(&name.to_string_lossy(), &String::from_utf8_lossy(&text))
        })
        .collect();
    print!("{}", summary(&rows));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_what_the_format_says() {
        for yes in ["0", "-12", "3.25", "1e5", "-2.5E-3"] {
            assert!(is_number(yes), "{yes}");
        }
        for no in ["", "-", ".5", "1.", "1e", "inf", "NaN", "1,5", "+1", "0x10"] {
            assert!(!is_number(no), "{no}");
        }
    }

    #[test]
    fn the_summary_is_its_header_then_one_row_per_file() {
        let rows = ["| a.csv | 0 | 1 | - |\n".to_owned()];
        let expected = "# CSV summary\n\n\
            | file | rows | columns | numeric columns: min / max / mean |\n\
            |---|---|---|---|\n\
            | a.csv | 0 | 1 | - |\n";
        assert_eq!(summary(&rows), expected);
    }

    #[test]
    fn a_row_counts_rows_and_columns_and_summarises_numeric_columns() {
        let row = summary_row("a.csv", "name,x,y\r\nab,1,-0.5\n\ncd,3,2.25\nef,2,1\n");
        assert_eq!(
            row,
            "| a.csv | 3 | 3 | x: 1.000 / 3.000 / 2.000; y: -0.500 / 2.250 / 0.917 |\n"
        );
        assert_eq!(
            summary_row("b.csv", "name\nab\n"),
            "| b.csv | 1 | 1 | - |\n"
        );
    }
}
