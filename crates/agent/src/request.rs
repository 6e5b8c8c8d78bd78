//! A request frame's body → a typed [`Request`], or the error the agent answers with.
//!
//! The body is untrusted input from any local user. Whatever it holds, parsing does not
//! panic, and the answer's message is at most [`MAX_MESSAGE`] bytes: text from the frame that
//! the message quotes (an unknown type, serde's account of a bad field) is cut to
//! [`MAX_ECHO`] bytes with "…", so a client is never sent its own megabyte back.

use gpubook_proto::{ClientFrame, ErrorBody, ErrorKind, Request};

/// The longest error message [`parse_request`] answers with, in bytes.
pub const MAX_MESSAGE: usize = 512;
/// The most bytes of any one piece of the frame quoted in an error message (after escaping).
pub const MAX_ECHO: usize = 64;

/// A frame's body → (request id, request), or the error to answer with (and the request's
/// id, when the frame had one).
pub fn parse_request(body: &[u8]) -> Result<(u64, Request), (Option<u64>, ErrorBody)> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        (
            None,
            refusal(ErrorKind::Malformed, format!("the frame is not JSON: {e}")),
        )
    })?;
    let id = v.get("id").and_then(|i| i.as_u64());
    match v.get("type").and_then(|t| t.as_str()) {
        Some("request") => {}
        Some("hello") => {
            return Err((
                id,
                refusal(
                    ErrorKind::Invalid,
                    "hello was already said on this connection".into(),
                ),
            ))
        }
        Some(t) => {
            return Err((
                id,
                refusal(
                    ErrorKind::UnknownRequest,
                    format!("unknown frame type {}", quote(t)),
                ),
            ))
        }
        None => {
            return Err((
                id,
                refusal(ErrorKind::Malformed, "the frame has no \"type\"".into()),
            ))
        }
    }
    let Some(id) = id else {
        return Err((
            None,
            refusal(
                ErrorKind::Malformed,
                "a request needs a numeric \"id\"".into(),
            ),
        ));
    };
    let kind = v
        .get("body")
        .and_then(|b| b.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let Some(kind) = Request::TYPES.iter().copied().find(|t| *t == kind) else {
        return Err((
            Some(id),
            refusal(
                ErrorKind::UnknownRequest,
                format!(
                    "this agent does not know the request {}; it knows: {}",
                    quote(kind),
                    Request::TYPES.join(", ")
                ),
            ),
        ));
    };
    match serde_json::from_value::<ClientFrame>(v) {
        Ok(ClientFrame::Request { id, body }) => Ok((id, body)),
        Ok(ClientFrame::Hello(_)) => unreachable!("type was checked to be request"),
        Err(e) => Err((
            Some(id),
            refusal(
                ErrorKind::Invalid,
                format!("bad {kind} request: {}", shorten_quotes(&e.to_string())),
            ),
        )),
    }
}

/// The error body, its message cut to [`MAX_MESSAGE`] bytes: the last guard, whatever a
/// message quotes.
fn refusal(kind: ErrorKind, message: String) -> ErrorBody {
    ErrorBody::new(kind, clip(message, MAX_MESSAGE))
}

/// `text` in double quotes, escaped as Rust's `{:?}` would, cut to [`MAX_ECHO`] bytes.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        let escaped: String = c.escape_debug().collect();
        if out.len() - 1 + escaped.len() > MAX_ECHO {
            out.push('…');
            break;
        }
        out.push_str(&escaped);
    }
    out.push('"');
    out
}

/// serde's message with each piece of the frame it quotes (between `"` or backticks, as in
/// `invalid type: string "…"` or ``unknown variant `…` ``) cut to [`MAX_ECHO`] bytes.
fn shorten_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE));
    // The character that ends the quote we are in, the bytes of it seen so far, and whether
    // the last one was a backslash (serde escapes `"` inside a string it quotes).
    let mut close: Option<char> = None;
    let mut seen = 0;
    let mut escaped = false;
    for c in text.chars() {
        let Some(end) = close else {
            out.push(c);
            if c == '"' || c == '`' {
                (close, seen, escaped) = (Some(c), 0, false);
            }
            continue;
        };
        if c == end && !escaped {
            if seen > MAX_ECHO {
                out.push('…');
            }
            out.push(c);
            close = None;
            continue;
        }
        escaped = end == '"' && c == '\\' && !escaped;
        seen += c.len_utf8();
        if seen <= MAX_ECHO {
            out.push(c);
        }
    }
    if close.is_some() && seen > MAX_ECHO {
        out.push('…');
    }
    out
}

/// `text` cut to at most `max` bytes on a character boundary, ending in "…" when cut.
fn clip(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_escaped_and_cut() {
        assert_eq!(quote("teleport"), "\"teleport\"");
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        let long = quote(&"é".repeat(100));
        assert!(long.len() <= MAX_ECHO + 2 + '…'.len_utf8(), "{long}");
        assert!(long.ends_with("…\""), "{long}");
    }

    #[test]
    fn serde_quotes_are_cut_and_the_rest_kept() {
        let text = format!(
            "unknown variant `{}`, expected `named` or `count`",
            "x".repeat(1000)
        );
        let short = shorten_quotes(&text);
        assert_eq!(
            short,
            format!(
                "unknown variant `{}…`, expected `named` or `count`",
                "x".repeat(MAX_ECHO)
            )
        );
        let text = format!(
            "invalid type: string \"{}\\\"{}\", expected u64",
            "a".repeat(10),
            "b".repeat(500)
        );
        assert_eq!(
            shorten_quotes(&text),
            format!(
                "invalid type: string \"{}\\\"{}…\", expected u64",
                "a".repeat(10),
                "b".repeat(MAX_ECHO - 12)
            ),
            "an escaped quote does not end the quote"
        );
    }

    #[test]
    fn clip_keeps_characters_whole() {
        assert_eq!(clip("short".into(), 10), "short");
        let cut = clip("ééééé".into(), 6);
        assert_eq!(cut, "é…");
        assert!(cut.len() <= 6);
    }
}
