use herd_types::FieldError;
use std::time::Duration;

/// What can go wrong talking to Herd, split the way callers act on it: the API said
/// no (a problem with a code), Herd could not be reached or answered nonsense, or a
/// wait ran out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error (RFC 9457 problem details).
    #[error("{0}")]
    Api(ApiProblem),
    /// No answer: connection refused, DNS, TLS, a timeout on the wire.
    #[error("cannot reach Herd at {url}: {}", root_cause(source))]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer this client cannot read (not Herd, or a broken response).
    #[error("unexpected response from Herd ({status}): {message}")]
    Decode { status: u16, message: String },
    /// A wait's deadline passed; the work goes on at the server.
    #[error("gave up waiting after {0:?}")]
    Timeout(Duration),
}

/// reqwest repeats itself down its chain ("error sending request for url (...)"); the
/// innermost cause says what happened (connection refused, reset, timed out).
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl Error {
    /// The problem, when the API refused.
    pub fn problem(&self) -> Option<&ApiProblem> {
        match self {
            Error::Api(p) => Some(p),
            _ => None,
        }
    }

    /// The API's error code (`validation_failed`, `not_found`, ...), if it answered one.
    pub fn code(&self) -> Option<&str> {
        self.problem().map(|p| p.code.as_str())
    }
}

/// An error response. `code` is kept as text so a newer server's codes still read.
#[derive(Debug, Clone)]
pub struct ApiProblem {
    pub status: u16,
    pub code: String,
    pub title: String,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// With `quota_exceeded`: the limit, its value, the usage and what was asked.
    pub quota: Option<Box<herd_types::QuotaExceeded>>,
}

impl ApiProblem {
    /// Reads a problem+json body; anything else becomes a problem naming the status.
    pub(crate) fn from_body(status: u16, body: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct Lenient {
            code: Option<String>,
            title: Option<String>,
            detail: Option<String>,
            #[serde(default)]
            errors: Vec<FieldError>,
            #[serde(default)]
            quota: Option<herd_types::QuotaExceeded>,
        }
        match serde_json::from_str::<Lenient>(body) {
            Ok(p) => ApiProblem {
                status,
                code: p.code.unwrap_or_else(|| format!("http_{status}")),
                title: p.title.unwrap_or_default(),
                detail: p.detail.unwrap_or_default(),
                errors: p.errors,
                quota: p.quota.map(Box::new),
            },
            Err(_) => ApiProblem {
                status,
                code: format!("http_{status}"),
                title: String::new(),
                detail: body.chars().take(200).collect(),
                errors: Vec::new(),
                quota: None,
            },
        }
    }
}

impl std::fmt::Display for ApiProblem {
    /// One line per field for validation errors (`validation_failed: nodes: must be
    /// from 1 to 9`), else `code: detail`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.errors.is_empty() {
            return write!(f, "{}: {}", self.code, self.detail);
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.code, e.field, e.message)?;
        }
        Ok(())
    }
}
