//! The ec2 provider against `moto_server` (pip install 'moto[server]'), started by
//! the test on a free port of 127.0.0.1 and killed (its whole process group) by a
//! Drop guard. moto only mocks the API: nothing boots, so SSH is tested with the
//! local provider. `HERD_MOTO_SERVER` overrides the moto_server executable.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::Filter;
use herd_providers::ec2::Ec2Provider;
use herd_providers::{
    AttachmentKind, Ec2ProviderSettings, Provider, ProviderError, ServerSpec, ServerStatus, SnapshotSpec,
    SnapshotStatus, VolumeSpec, VolumeStatus,
};
use herd_testkit::eventually;
use ssh_key::{Algorithm, PrivateKey, rand_core::OsRng};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let program = std::env::var("HERD_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: Drop kills moto and anything it forked.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (pip install 'moto[server]'): {e}"));
        let mut moto = Moto { child, port };
        eventually(&format!("moto_server listening on {port}"), Duration::from_secs(60), || {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited early: {status}");
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        moto
    }

    fn client(&self) -> Client {
        // Static test credentials: moto accepts any, and the standard chain would
        // otherwise look further (profiles, instance metadata).
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .build();
        Client::from_conf(conf)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn settings(types: &[&str]) -> Ec2ProviderSettings {
    Ec2ProviderSettings {
        instance_types: types.iter().map(|t| t.to_string()).collect(),
        wait_timeout_secs: 30,
        ..Ec2ProviderSettings::default()
    }
}

async fn tags_of_instance(client: &Client, id: &str) -> BTreeMap<String, String> {
    let out = client.describe_instances().instance_ids(id).send().await.unwrap();
    let instance = &out.reservations()[0].instances()[0];
    instance.tags().iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_and_volume_lifecycle() {
    let moto = Moto::start();
    let raw = moto.client();
    let provider = Ec2Provider::with_client("ec2", &settings(&["t3.medium", "m6i.large"]), moto.client()).unwrap();

    // Flavors come from DescribeInstanceTypes.
    let flavors = provider.flavors().await.unwrap();
    assert_eq!(flavors.len(), 2);
    assert_eq!(flavors[0].id, "t3.medium");
    assert_eq!((flavors[0].vcpus, flavors[0].ram_mb), (2, 4096));
    assert_eq!(flavors[1].id, "m6i.large");
    assert_eq!((flavors[1].vcpus, flavors[1].ram_mb), (2, 8192));
    let bogus = Ec2Provider::with_client("ec2", &settings(&["t3.bogus"]), moto.client()).unwrap();
    let err = bogus.flavors().await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err}");

    // An AMI moto knows.
    let images = raw.describe_images().send().await.unwrap();
    let image = images.images()[0].image_id().unwrap().to_owned();

    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let spec = ServerSpec {
        name: "c1-node-1".into(),
        flavor: "t3.medium".into(),
        image: Some(image.clone()),
        authorized_key: key.public_key().to_openssh().unwrap(),
        tags: BTreeMap::from([
            ("herd:cluster".to_owned(), "c1".to_owned()),
            ("herd:node".to_owned(), "node-1".to_owned()),
        ]),
    };
    let server = provider.create_server(&spec, "step-create").await.unwrap();
    assert!(server.id.starts_with("i-"), "{}", server.id);
    assert_eq!(server.status, ServerStatus::Running);
    assert!(server.address.is_some());
    assert_eq!(server.name, "c1-node-1");
    assert_eq!(server.flavor, "t3.medium");
    assert_eq!(server.root_prefix, std::path::Path::new("/"));
    assert_eq!(server.login_user, "admin");
    assert_eq!(server.tags, spec.tags);

    // Tags as EC2 sees them, and the imported key pair.
    let tags = tags_of_instance(&raw, &server.id).await;
    assert_eq!(tags.get("herd:cluster").map(String::as_str), Some("c1"));
    assert_eq!(tags.get("herd:node").map(String::as_str), Some("node-1"));
    assert_eq!(tags.get("Name").map(String::as_str), Some("c1-node-1"));
    assert_eq!(tags.get("herd:token").map(String::as_str), Some("step-create"));
    let out = raw.describe_instances().instance_ids(&server.id).send().await.unwrap();
    let key_name = out.reservations()[0].instances()[0].key_name().unwrap().to_owned();
    assert!(key_name.starts_with("herd-"), "{key_name}");

    // A retried step finds its instance instead of launching a second one.
    let again = provider.create_server(&spec, "step-create").await.unwrap();
    assert_eq!(again.id, server.id);
    let by_cluster = raw
        .describe_instances()
        .filters(Filter::builder().name("tag:herd:cluster").values("c1").build())
        .send()
        .await
        .unwrap();
    let count: usize = by_cluster.reservations().iter().map(|r| r.instances().len()).sum();
    assert_eq!(count, 1);

    // A second server with the same key reuses the key pair.
    let spec2 = ServerSpec { name: "c1-node-2".into(), ..spec.clone() };
    let server2 = provider.create_server(&spec2, "step-create-2").await.unwrap();
    assert_ne!(server2.id, server.id);
    let pairs = raw.describe_key_pairs().send().await.unwrap();
    assert_eq!(pairs.key_pairs().iter().filter(|k| k.key_name() == Some(&key_name)).count(), 1);

    let c1 = BTreeMap::from([("herd:cluster".to_owned(), "c1".to_owned())]);
    let listed = provider.list_servers(&c1).await.unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    ids.sort();
    let mut want = [server.id.as_str(), server2.id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let node2 =
        BTreeMap::from([("herd:node".to_owned(), "node-1".to_owned()), ("Name".to_owned(), "c1-node-2".to_owned())]);
    assert_eq!(provider.list_servers(&node2).await.unwrap().len(), 1);

    let mut no_image = spec.clone();
    no_image.image = None;
    assert!(matches!(provider.create_server(&no_image, "step-x").await, Err(ProviderError::Permanent(_))));

    // Power.
    let stopped = provider.stop_server(&server.id, false).await.unwrap();
    assert_eq!(stopped.status, ServerStatus::Stopped);
    assert_eq!(provider.get_server(&server.id).await.unwrap().status, ServerStatus::Stopped);
    assert_eq!(provider.stop_server(&server.id, false).await.unwrap().status, ServerStatus::Stopped);
    let started = provider.start_server(&server.id).await.unwrap();
    assert_eq!(started.status, ServerStatus::Running);
    let forced = provider.stop_server(&server.id, true).await.unwrap();
    assert_eq!(forced.status, ServerStatus::Stopped);
    assert_eq!(provider.start_server(&server.id).await.unwrap().status, ServerStatus::Running);
    assert_eq!(provider.start_server(&server.id).await.unwrap().status, ServerStatus::Running);

    // A volume in the instance's zone.
    let az = raw.describe_instances().instance_ids(&server.id).send().await.unwrap().reservations()[0].instances()[0]
        .placement()
        .unwrap()
        .availability_zone()
        .unwrap()
        .to_owned();
    let vspec = VolumeSpec {
        name: "c1-data-1".into(),
        size_gb: 10,
        server_id: Some(server.id.clone()),
        tags: BTreeMap::from([("herd:cluster".to_owned(), "c1".to_owned())]),
    };
    let vol = provider.create_volume(&vspec, "step-vol").await.unwrap();
    assert!(vol.id.starts_with("vol-"), "{}", vol.id);
    assert_eq!(vol.status, VolumeStatus::Available);
    assert_eq!(vol.size_gb, 10);
    assert_eq!(vol.availability_zone.as_deref(), Some(az.as_str()));
    assert_eq!(provider.create_volume(&vspec, "step-vol").await.unwrap().id, vol.id);
    let no_zone = VolumeSpec { server_id: None, ..vspec.clone() };
    assert!(matches!(provider.create_volume(&no_zone, "step-vol-nozone").await, Err(ProviderError::Permanent(_))));

    let att = provider.attach_volume(&vol.id, &server.id).await.unwrap();
    assert_eq!(att.kind, AttachmentKind::Device);
    assert_eq!(att.path, "/dev/sdf");
    assert_eq!(provider.attach_volume(&vol.id, &server.id).await.unwrap(), att);
    let got = provider.get_volume(&vol.id).await.unwrap();
    assert_eq!(got.status, VolumeStatus::InUse);
    assert_eq!(got.attached_to.as_deref(), Some(server.id.as_str()));
    let err = provider.attach_volume(&vol.id, &server2.id).await.unwrap_err();
    assert!(matches!(err, ProviderError::Conflict(_)), "{err}");
    let err = provider.delete_volume(&vol.id).await.unwrap_err();
    assert!(matches!(err, ProviderError::Conflict(_)), "{err}");

    // Snapshot (tag-based idempotency: CreateSnapshot has no client token).
    let sspec = SnapshotSpec { name: "c1-snap".into(), tags: BTreeMap::new() };
    let snap = provider.snapshot_volume(&vol.id, &sspec, "step-snap").await.unwrap();
    assert!(snap.id.starts_with("snap-"), "{}", snap.id);
    assert_eq!(snap.status, SnapshotStatus::Completed);
    assert_eq!(snap.volume_id, vol.id);
    assert_eq!(snap.size_gb, 10);
    assert_eq!(provider.snapshot_volume(&vol.id, &sspec, "step-snap").await.unwrap().id, snap.id);
    assert_eq!(provider.get_snapshot(&snap.id).await.unwrap().id, snap.id);

    let rspec = VolumeSpec { name: "c1-restored".into(), size_gb: 1, ..vspec.clone() };
    let restored = provider.create_volume_from_snapshot(&snap.id, &rspec, "step-restore").await.unwrap();
    assert_ne!(restored.id, vol.id);
    assert_eq!(restored.size_gb, 10, "raised to the snapshot's size");
    assert_eq!(restored.snapshot_id.as_deref(), Some(snap.id.as_str()));
    assert_eq!(provider.create_volume_from_snapshot(&snap.id, &rspec, "step-restore").await.unwrap().id, restored.id);
    let att2 = provider.attach_volume(&restored.id, &server.id).await.unwrap();
    assert_eq!(att2.path, "/dev/sdg", "the next free device");

    // Detach (idempotent), delete everything (idempotent).
    for v in [&vol.id, &restored.id] {
        provider.detach_volume(v, &server.id).await.unwrap();
        provider.detach_volume(v, &server.id).await.unwrap();
        assert_eq!(provider.get_volume(v).await.unwrap().status, VolumeStatus::Available);
        provider.delete_volume(v).await.unwrap();
        provider.delete_volume(v).await.unwrap();
        let err = provider.get_volume(v).await.unwrap_err();
        assert!(matches!(err, ProviderError::NotFound(_)), "{err}");
    }
    provider.delete_snapshot(&snap.id).await.unwrap();
    provider.delete_snapshot(&snap.id).await.unwrap();
    assert!(matches!(provider.get_snapshot(&snap.id).await, Err(ProviderError::NotFound(_))));

    for id in [&server.id, &server2.id] {
        provider.delete_server(id).await.unwrap();
        provider.delete_server(id).await.unwrap();
        match provider.get_server(id).await {
            Ok(info) => assert_eq!(info.status, ServerStatus::Deleted),
            Err(ProviderError::NotFound(_)) => {}
            Err(e) => panic!("get deleted server: {e}"),
        }
    }
    assert!(provider.list_servers(&c1).await.unwrap().is_empty(), "terminated servers are not listed");
    let err = provider.get_server("i-0123456789abcdef0").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err}");
}
