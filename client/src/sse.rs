//! A Server-Sent Events reader (the WHATWG event-stream format) over a response body.

use futures_util::{Stream, StreamExt};

/// One dispatched message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// The `id:` in effect (the last one seen on the stream), for `Last-Event-ID`.
    pub last_id: Option<String>,
    /// `event:` (default `message`).
    pub event: String,
    pub data: String,
}

/// Splits a byte stream into messages. Lines end in LF, CR or CRLF; comments (`:`)
/// are skipped; a blank line dispatches.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    last_id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    /// A CR ended the previous chunk: a leading LF in the next belongs to it.
    skip_lf: bool,
}

impl SseParser {
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        let mut out = Vec::new();
        for &b in chunk {
            if std::mem::take(&mut self.skip_lf) && b == b'\n' {
                continue;
            }
            match b {
                b'\n' | b'\r' => {
                    self.skip_lf = b == b'\r';
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
                    if let Some(m) = self.line(&line) {
                        out.push(m);
                    }
                }
                _ => self.buf.push(b),
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            let event = self.event.take();
            let data = self.data.take()?;
            return Some(SseMessage {
                last_id: self.last_id.clone(),
                event: event.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                let d = self.data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(value);
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// The messages of a response body, in order.
pub fn messages(
    body: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
) -> impl Stream<Item = reqwest::Result<SseMessage>> {
    futures_util::stream::unfold((body, SseParser::default(), std::collections::VecDeque::new()), |mut st| async move {
        loop {
            if let Some(m) = st.2.pop_front() {
                return Some((Ok(m), st));
            }
            match st.0.next().await? {
                Ok(chunk) => st.2.extend(st.1.feed(&chunk)),
                Err(e) => return Some((Err(e), st)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_and_line_endings() {
        let mut p = SseParser::default();
        assert!(p.feed(b": keepalive\n\nid: 1\nevent: ev").is_empty());
        let m = p.feed(b"ent\r\ndata: {\"a\":1}\r\n\r\ndata: x\rdata: y\r");
        assert_eq!(m, vec![SseMessage { last_id: Some("1".into()), event: "event".into(), data: "{\"a\":1}".into() }]);
        let m = p.feed(b"\n\r\n");
        assert_eq!(m, vec![SseMessage { last_id: Some("1".into()), event: "message".into(), data: "x\ny".into() }]);
        // A blank line without data dispatches nothing, and forgets the event name.
        assert!(p.feed(b"event: task\n\n").is_empty());
        assert_eq!(p.feed(b"data: z\n\n")[0].event, "message");
    }
}
