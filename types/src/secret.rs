//! Request fields that carry a secret are `SecretString` (redacted from `Debug`,
//! zeroed on drop). `secrecy` refuses to serialize them by default; a client sending
//! one exposes it here, on purpose, and nowhere else.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

pub(crate) fn expose<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.expose_secret())
}

pub(crate) fn expose_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(v.expose_secret()),
        None => s.serialize_none(),
    }
}
