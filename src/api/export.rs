//! Streamed exports of every row a list filter matches, as CSV or NDJSON.
//!
//! A list endpoint answers one JSON page by default; with `Accept: text/csv` or
//! `application/x-ndjson` it answers every matching row instead, read from the store one
//! keyset page at a time and written out as each page arrives, so memory stays flat however
//! many rows match. The status line goes out before the first row is read: a store error
//! half-way aborts the body (the client sees a truncated transfer, never a short file that
//! looks complete).

use crate::store::{Page, PageRequest, StoreError};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::Serialize;

/// Rows read from the store per chunk written.
const EXPORT_PAGE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Ndjson,
}

/// The format the `Accept` header asks for: CSV or NDJSON when named, else a JSON page.
pub fn negotiate(headers: &HeaderMap) -> Format {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    for media in accept {
        match media.as_str() {
            "text/csv" => return Format::Csv,
            "application/x-ndjson" | "application/ndjson" => return Format::Ndjson,
            _ => {}
        }
    }
    Format::Json
}

/// A row that can be written as one CSV record.
pub trait CsvRecord: Serialize {
    const HEADER: &'static [&'static str];
    fn fields(&self) -> Vec<String>;
}

/// Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` (and some a tab or carriage
/// return) as a formula; OWASP's advice is to prefix such a cell with `'`, which shows it as
/// the text it was.
pub fn neutralise_formula(cell: String) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell,
    }
}

/// A timestamp as exports write it: RFC 3339, UTC, to the microsecond the stores keep.
pub fn time_cell(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn csv_chunk<T: CsvRecord>(rows: &[T], with_header: bool) -> Result<Bytes, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(rows.len() * 256));
    if with_header {
        writer.write_record(T::HEADER)?;
    }
    for row in rows {
        writer.write_record(row.fields().into_iter().map(neutralise_formula))?;
    }
    writer
        .into_inner()
        .map(Bytes::from)
        .map_err(|e| e.into_error().into())
}

fn ndjson_chunk<T: Serialize>(rows: &[T]) -> Result<Bytes, serde_json::Error> {
    let mut out = Vec::with_capacity(rows.len() * 512);
    for row in rows {
        serde_json::to_writer(&mut out, row)?;
        out.push(b'\n');
    }
    Ok(Bytes::from(out))
}

/// Where an export has got to.
enum Cursor {
    Start(Option<String>),
    After(String),
    Done,
}

/// Streams every row `fetch` yields, page after page, as `format` (CSV or NDJSON), under
/// `filename` for browsers that save it.
pub fn stream<T, F>(format: Format, filename: &str, start: Option<String>, fetch: F) -> Response
where
    T: CsvRecord + Send + 'static,
    F: Fn(PageRequest) -> BoxFuture<'static, Result<Page<T>, StoreError>> + Send + 'static,
{
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        _ => ("application/x-ndjson", "ndjson"),
    };
    let body = futures_util::stream::unfold(
        (Cursor::Start(start), fetch),
        move |(cursor, fetch)| async move {
            let (after, first) = match cursor {
                Cursor::Done => return None,
                Cursor::Start(after) => (after, true),
                Cursor::After(after) => (Some(after), false),
            };
            let page = match fetch(PageRequest {
                limit: EXPORT_PAGE,
                after,
            })
            .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "export aborted: the store failed");
                    return Some((Err(std::io::Error::other(e)), (Cursor::Done, fetch)));
                }
            };
            let chunk = match format {
                Format::Csv => csv_chunk(&page.items, first).map_err(std::io::Error::other),
                _ => ndjson_chunk(&page.items).map_err(std::io::Error::other),
            };
            let next = match page.next_after {
                Some(after) => Cursor::After(after),
                None => Cursor::Done,
            };
            Some((chunk, (next, fetch)))
        },
    );
    let disposition = format!("attachment; filename=\"{filename}.{extension}\"");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_csv_or_ndjson_and_defaults_to_json() {
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&h), Format::Json);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/csv;q=0.9, */*"),
        );
        assert_eq!(negotiate(&h), Format::Csv);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/x-ndjson"),
        );
        assert_eq!(negotiate(&h), Format::Ndjson);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert_eq!(negotiate(&h), Format::Json);
    }

    #[test]
    fn formula_leading_cells_are_defused_and_others_kept() {
        for bad in ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(bad.into()), format!("'{bad}"));
        }
        for good in ["", "a=b", "10.0.0.0/8", "2026-01-01T00:00:00Z", "'quoted"] {
            assert_eq!(neutralise_formula(good.into()), good);
        }
    }
}
