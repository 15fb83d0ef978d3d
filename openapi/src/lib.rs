//! The committed OpenAPI document (`openapi/openapi.json`), the contract SDKs are
//! generated from. A test keeps it equal to what the code generates.

use std::path::PathBuf;

pub fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}
