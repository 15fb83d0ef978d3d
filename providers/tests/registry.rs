//! Building providers from settings: names, kinds, capabilities, admin-safe
//! descriptions, and configuration errors. No network I/O happens here.

use herd_providers::{
    Ec2ProviderSettings, LocalProviderSettings, ProviderError, ProviderKind, ProvidersSettings, build_providers,
};

fn local_settings(dir: &std::path::Path) -> LocalProviderSettings {
    LocalProviderSettings { root: Some(dir.join("local-root")), ..LocalProviderSettings::default() }
}

#[test]
fn builds_local_and_ec2_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ProvidersSettings {
        local: local_settings(dir.path()),
        ec2: Some(Ec2ProviderSettings {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            ..Ec2ProviderSettings::default()
        }),
    };
    let providers = build_providers(&settings, dir.path()).unwrap();
    assert_eq!(providers.names().collect::<Vec<_>>(), ["ec2", "local"]);
    let infos = providers.list();
    assert_eq!(infos.len(), 2);
    let local = infos.iter().find(|i| i.name == "local").unwrap();
    assert_eq!(local.kind, ProviderKind::Local);
    assert!(local.capabilities.volumes && local.capabilities.snapshots);
    assert!(local.capabilities.power_control);
    let ec2 = providers.require("ec2").unwrap();
    assert_eq!(ec2.kind(), ProviderKind::Ec2);
    // The configured root is used (and created), not the state-dir default.
    assert!(dir.path().join("local-root/state/servers").is_dir());
    assert!(!dir.path().join("local").exists());

    let described = providers.describe();
    assert_eq!(described["local"]["address_pool"], "127.77.0.0/16");
    assert_eq!(described["ec2"]["region"], "us-east-1");
    let text = described.to_string().to_lowercase();
    for secret in ["secret", "password", "private", "access_key"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let json = serde_json::to_value(&infos).unwrap();
    assert_eq!(json[1]["kind"], "local");
    assert_eq!(json[1]["capabilities"]["power_control"], true);

    assert!(providers.get("openstack").is_none());
    let err = providers.require("openstack").unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("ec2, local"), "{err}");
}

#[test]
fn local_root_defaults_to_state_dir_and_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let providers = build_providers(&ProvidersSettings::default(), dir.path()).unwrap();
    assert_eq!(providers.names().collect::<Vec<_>>(), ["local"]);
    assert!(dir.path().join("local/state").is_dir());

    let mut settings = ProvidersSettings::default();
    settings.local.enabled = false;
    let providers = build_providers(&settings, dir.path()).unwrap();
    assert!(providers.is_empty());
}

#[test]
fn rejects_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let bad_local = [
        LocalProviderSettings { address_pool: "10.0.0.0/8".into(), ..local_settings(dir.path()) },
        LocalProviderSettings { sshd_path: "sshd".into(), ..local_settings(dir.path()) },
        LocalProviderSettings { login_user: "root; rm".into(), ..local_settings(dir.path()) },
        LocalProviderSettings { process_tracking: "magic".into(), ..local_settings(dir.path()) },
        LocalProviderSettings { root: Some(dir.path().join("with\"quote")), ..local_settings(dir.path()) },
    ];
    for local in bad_local {
        let settings = ProvidersSettings { local: local.clone(), ec2: None };
        let err = build_providers(&settings, dir.path()).unwrap_err();
        assert!(matches!(err, ProviderError::Permanent(_)), "{local:?}: {err}");
    }
    let settings = ProvidersSettings {
        local: LocalProviderSettings { enabled: false, ..LocalProviderSettings::default() },
        ec2: Some(Ec2ProviderSettings { instance_types: vec![], ..Ec2ProviderSettings::default() }),
    };
    assert!(matches!(build_providers(&settings, dir.path()), Err(ProviderError::Permanent(_))));
}

#[test]
fn error_kinds_say_whether_to_retry() {
    assert!(ProviderError::Transient("x".into()).is_retryable());
    assert!(ProviderError::Capacity("x".into()).is_retryable());
    assert!(!ProviderError::Permanent("x".into()).is_retryable());
    assert!(!ProviderError::NotFound("x".into()).is_retryable());
    assert_eq!(ProviderError::Conflict("x".into()).code(), "provider_conflict");
}
