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

/// What SDK generators need to produce one clean client: named operations, one tag and
/// a summary each, errors as `Problem`, list items and enums as named schemas.
#[test]
fn the_spec_is_sdk_friendly() {
    let spec: serde_json::Value = serde_json::from_str(&herd_api::openapi_json()).unwrap();
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{what} has no operationId"));
            assert!(ids.insert(id.to_owned()), "{what}: operationId {id} is used twice");
            assert_eq!(op["tags"].as_array().map(Vec::len), Some(1), "{what} needs exactly one tag");
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what} has no summary");
            for (status, r) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
                        "{what} {status} is not a Problem"
                    );
                }
            }
        }
    }
    for (name, schema) in schemas {
        if name.starts_with("Page_") {
            let item = name.trim_start_matches("Page_");
            assert_eq!(
                schema["properties"]["items"]["items"]["$ref"],
                format!("#/components/schemas/{item}"),
                "{name}.items must reference {item}, not inline a copy"
            );
        }
        // Enums are named schemas of their own, never inline in a property.
        for (prop, p) in schema["properties"].as_object().into_iter().flatten() {
            let inline_enum = p.get("enum").is_some() || p["items"].get("enum").is_some();
            assert!(!inline_enum, "{name}.{prop} is an inline enum: give it a named schema");
        }
    }
    for e in ["ClusterStatus", "TaskStatus", "ErrorCode", "NodeRole", "BackupType"] {
        assert!(schemas[e]["enum"].is_array(), "{e} is a named enum schema");
    }
}
