//! Fails when the code's spec and the committed spec differ.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p herd-openapi`.

#[test]
fn committed_spec_matches_the_code() {
    let generated = herd_api::openapi_json();
    let path = herd_openapi::committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p herd-openapi` and commit it"
    );
}

#[test]
fn every_operation_documents_its_errors_and_auth() {
    let spec: serde_json::Value = serde_json::from_str(&herd_api::openapi_json()).unwrap();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path} lacks 500");
            if path.starts_with("/v1/") {
                assert!(responses.contains_key("401"), "{method} {path} lacks 401");
                assert!(op["security"].is_array(), "{method} {path} lacks security");
            }
            if op.get("requestBody").is_some() {
                for s in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(s), "{method} {path} lacks {s}");
                }
            }
        }
    }
}
