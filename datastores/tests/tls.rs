//! Every network surface of a member needs TLS and a credential: etcd (client and
//! peer ports) and Patroni's REST API, against real daemons on loopback hosts. Two
//! one-node clusters show that one cluster's node cannot reach the other's etcd.
//! Run with `--test-threads=1`.

mod common;

use common::*;
use herd_datastores::ClusterSpec;
use herd_datastores::postgresql::PostgresManager;
use std::sync::Arc;

fn block<T>(fx: &Fixture, f: impl std::future::Future<Output = T>) -> T {
    fx.rt.block_on(f)
}

/// The status of a request, or the transport error's text (handshake refused...).
fn send(fx: &Fixture, req: reqwest::RequestBuilder) -> Result<u16, String> {
    block(fx, async { req.send().await.map(|r| r.status().as_u16()) }).map_err(|e| format!("{e:?}"))
}

fn etcd(c: &ClusterSpec, scheme: &str, port: u16, path: &str) -> String {
    format!("{scheme}://{}:{port}{path}", c.members[0].address)
}

#[test]
fn etcd_and_patroni_need_tls_and_a_certificate_of_the_cluster() {
    let fx = Fixture::new();
    let m = Arc::new(PostgresManager::default());
    let (a, a_servers) = fx.cluster("tlsa", 1, false);
    let (b, b_servers) = fx.cluster("tlsb", 1, false);
    bring_up(&fx, &m, &a);
    bring_up(&fx, &m, &b);
    let plain = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(5)).build().unwrap();
    let list = "/v3/cluster/member/list";

    // Herd's certificate of the cluster is what works.
    assert_eq!(send(&fx, https(&a).post(etcd(&a, "https", 2379, list)).body("{}")), Ok(200));
    assert_eq!(send(&fx, https(&a).get(etcd(&a, "https", 8008, "/cluster"))), Ok(200));

    // etcd: plain HTTP gets no answer, TLS without a client certificate is refused
    // in the handshake, and so is a node certificate of another cluster.
    for port in [2379, 2380] {
        let r = send(&fx, plain.post(etcd(&a, "http", port, list)).body("{}"));
        assert!(!matches!(r, Ok(200)), "plain HTTP to etcd :{port}: {r:?}");
        let r = send(&fx, https_as(&a, None).post(etcd(&a, "https", port, list)).body("{}"));
        assert!(r.is_err(), "no client certificate to etcd :{port}: {r:?}");
    }
    let b_node = b.tls.member("tlsb-0").expect("b's node certificate");
    // The client trusts a's CA (so the server is a's); it presents b's node certificate.
    let as_b = https_as(&a, Some(b_node));
    let r = send(&fx, as_b.post(etcd(&a, "https", 2379, list)).body("{}"));
    assert!(r.is_err(), "cluster b's node reached cluster a's etcd: {r:?}");
    let r = send(&fx, as_b.get(etcd(&a, "https", 2380, "/members")));
    assert!(r.is_err(), "cluster b's node reached cluster a's etcd peer port: {r:?}");
    // The same request with a's own node certificate passes: the CA is what decides.
    let as_a = https_as(&a, a.tls.member("tlsa-0"));
    assert_eq!(send(&fx, as_a.post(etcd(&a, "https", 2379, list)).body("{}")), Ok(200));

    // Patroni: HTTPS only; reads need no certificate, unsafe endpoints need one of
    // the cluster and Herd's own password (not the superuser's).
    let r = send(&fx, plain.get(etcd(&a, "http", 8008, "/cluster")));
    assert!(!matches!(r, Ok(200)), "plain HTTP to Patroni: {r:?}");
    let unsafe_call = |client: &reqwest::Client, user: &str, password: &str| {
        send(
            &fx,
            client
                .patch(etcd(&a, "https", 8008, "/config"))
                .basic_auth(user, Some(password))
                .json(&serde_json::json!({"ttl": 5})),
        )
    };
    assert_eq!(send(&fx, https_as(&a, None).get(etcd(&a, "https", 8008, "/patroni"))), Ok(200));
    assert_eq!(unsafe_call(&https_as(&a, None), "herd", PATRONI_API_PW), Ok(403), "no client certificate");
    assert_eq!(unsafe_call(&https(&a), "postgres", SUPERUSER_PW), Ok(401), "the superuser is no API user");
    assert_eq!(unsafe_call(&https(&a), "herd", "guess"), Ok(401));
    let r = unsafe_call(&https_as(&a, Some(b_node)), "herd", PATRONI_API_PW);
    assert!(r.is_err(), "another cluster's certificate at Patroni: {r:?}");
    assert_eq!(unsafe_call(&https(&a), "herd", PATRONI_API_PW), Ok(200));

    stop_and_delete(&fx, &m, &a, &a_servers);
    stop_and_delete(&fx, &m, &b, &b_servers);
}
