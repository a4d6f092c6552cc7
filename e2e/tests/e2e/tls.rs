//! 17. TLS with the operator's certificates, a read-only user, and a certificate rotation under
//!     traffic: a 2-node cluster with `tls.enabled` and a `readonly` user; a client trusting
//!     only `ca.crt` of `<name>-tls` speaks RESP over TLS through the client Service (verifying
//!     the Service's DNS name); the reader's write gets Redis's exact `NOPERM`; then
//!     `<name>-tls` is deleted while a writer opens a new TLS connection for every few writes:
//!     the operator issues a new certificate by the same CA, the nodes serve it without a
//!     restart, no write fails and every acknowledged write is on both pods (replicated over
//!     mutual TLS).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, report, wait, Stopwatch};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use sessionstore_api::names;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const TEST: &str = "tls";
const NAME: &str = "secure";
const READER_PASSWORD: &str = "reader-s3cret";

/// A RESP connection over TLS trusting `ca_pem`, verifying `server_name`.
struct Resp {
    stream: TlsStream<TcpStream>,
}

impl Resp {
    async fn connect(
        addr: std::net::SocketAddr,
        ca_pem: &[u8],
        server_name: &str,
    ) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(certificate?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        Ok(Self { stream })
    }

    /// The DER of the certificate the server presented.
    fn server_certificate(&self) -> Vec<u8> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    /// Sends one command and returns the reply's bytes (one simple, error or bulk reply).
    async fn call(&mut self, args: &[&str]) -> anyhow::Result<String> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if self.stream.read(&mut byte).await? == 0 {
                bail!(
                    "connection closed after {:?}",
                    String::from_utf8_lossy(&reply)
                );
            }
            reply.push(byte[0]);
            if !reply.ends_with(b"\r\n") {
                continue;
            }
            let text = String::from_utf8_lossy(&reply).into_owned();
            match text.strip_prefix('$') {
                Some(rest) => {
                    let first_line = rest.lines().next().unwrap_or_default();
                    let length: i64 = first_line.trim().parse()?;
                    let expected = 1 + first_line.len() + 2 + usize::try_from(length.max(0))? + 2;
                    if length < 0 || reply.len() >= expected {
                        return Ok(text);
                    }
                }
                None => return Ok(text),
            }
        }
    }
}

async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets
        .get(name)
        .await
        .with_context(|| format!("Secret {name}"))?;
    secret
        .data
        .and_then(|mut data| data.remove(key))
        .map(|bytes| bytes.0)
        .with_context(|| format!("Secret {name} has no {key}"))
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn tls_with_generated_certificates_a_readonly_user_and_a_rotation_under_traffic(
) -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let reader: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "reader-pass"},
            "stringData": {"password": READER_PASSWORD}
        }))?;
        secrets.create(&PostParams::default(), &reader).await?;
        let clock = Stopwatch::start();
        let spec = serde_json::json!({
            "tls": {"enabled": true},
            "auth": {"users": [{"name": "reader", "secretRef": {"name": "reader-pass"}, "role": "readonly"}]}
        });
        cluster::create(&client, &ns, &cluster::manifest(NAME, 2, spec)?).await?;
        let ready = wait::cluster_ready(&client, &ns, NAME, 2, true, Duration::from_secs(240)).await?;
        let not_after = ready
            .status
            .and_then(|s| s.tls)
            .and_then(|t| t.not_after)
            .context("status.tls.notAfter")?;
        report(TEST, format!("2 TLS nodes Available and Clustered after {clock}; certificate until {not_after}"));

        let ca = secret_value(&client, &ns, &names::tls_secret(NAME), "ca.crt").await?;
        let password = cluster::password(&client, &ns, NAME).await?;
        let service = Forwarder::service(&client, &ns, &names::client_service(NAME), "resp").await?;
        let service_name = format!("{NAME}.{ns}.svc");
        let mut writer = Resp::connect(service.addr(), &ca, &service_name).await?;
        ensure!(writer.call(&["AUTH", &password]).await? == "+OK\r\n");
        ensure!(writer.call(&["SET", "tls:first", "1"]).await? == "+OK\r\n");

        let mut readonly = Resp::connect(service.addr(), &ca, &service_name).await?;
        ensure!(readonly.call(&["AUTH", "reader", READER_PASSWORD]).await? == "+OK\r\n");
        let refused = readonly.call(&["SET", "tls:reader", "x"]).await?;
        ensure!(
            refused == "-NOPERM User reader has no permissions to run the 'set' command\r\n",
            "read-only SET answered {refused:?}"
        );
        // The reader may be on the other pod: replication is asynchronous.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let read = loop {
            let value = readonly.call(&["GET", "tls:first"]).await?;
            if value == "$1\r\n1\r\n" {
                break value;
            }
            ensure!(tokio::time::Instant::now() < deadline, "the reader reads {value:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        report(TEST, format!("readonly user: SET refused with {:?}, GET {read:?}", refused.trim_end()));
        let before = writer.server_certificate();

        // Rotation under traffic: a new TLS connection every 5 writes.
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = {
            let stop = stop.clone();
            let (addr, ca, service_name, password) =
                (service.addr(), ca.clone(), service_name.clone(), password.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut failures = Vec::new();
                let mut certificates = std::collections::BTreeSet::new();
                let mut index = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let result: anyhow::Result<()> = async {
                        let mut conn = Resp::connect(addr, &ca, &service_name).await?;
                        certificates.insert(conn.server_certificate());
                        ensure!(conn.call(&["AUTH", &password]).await? == "+OK\r\n");
                        for _ in 0..5 {
                            index += 1;
                            let key = format!("tls:rotation:{index}");
                            let reply = conn.call(&["SET", &key, "v"]).await?;
                            ensure!(reply == "+OK\r\n", "SET {key}: {reply:?}");
                            acknowledged.push(key);
                        }
                        Ok(())
                    }
                    .await;
                    if let Err(error) = result {
                        failures.push(format!("{error:#}"));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (acknowledged, failures, certificates.len())
            })
        };
        let clock = Stopwatch::start();
        secrets
            .delete(&names::tls_secret(NAME), &DeleteParams::default())
            .await?;
        let ca_after = wait::until(&client, &ns, "a new node certificate from the same CA", Duration::from_secs(60), || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                match secret_value(&client, &ns, &names::tls_secret(NAME), "ca.crt").await {
                    Ok(ca) => Ok(Ok(ca)),
                    Err(error) => Ok(Err(error.to_string())),
                }
            }
        })
        .await?;
        ensure!(ca_after == ca, "the CA changed with the node certificate");
        wait::until(&client, &ns, "the nodes serve the new certificate", Duration::from_secs(180), || {
            let (addr, ca, service_name, before) =
                (service.addr(), ca.clone(), service_name.clone(), before.clone());
            async move {
                let conn = Resp::connect(addr, &ca, &service_name).await?;
                Ok(if conn.server_certificate() != before { Ok(()) } else { Err("still the old certificate".to_owned()) })
            }
        })
        .await?;
        report(TEST, format!("deleted {}: the nodes serve a new certificate of the same CA after {clock}", names::tls_secret(NAME)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let (acknowledged, failures, certificates) = traffic.await?;
        report(TEST, format!("traffic: {} writes acknowledged over {certificates} certificates, {} failures", acknowledged.len(), failures.len()));
        ensure!(failures.is_empty(), "client errors during the rotation: {failures:?}");
        ensure!(certificates >= 2, "the writer never saw the new certificate");

        // Every acknowledged write is on both pods (replicated over mutual TLS).
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for ordinal in 0..2 {
            let pod = names::pod(NAME, ordinal);
            let restarts: i32 = pods
                .get(&pod)
                .await?
                .status
                .and_then(|s| s.container_statuses)
                .map(|c| c.iter().map(|c| c.restart_count).sum())
                .unwrap_or_default();
            ensure!(restarts == 0, "{pod} restarted {restarts} times");
            let forward = Forwarder::pod(&client, &ns, &pod, 6379).await?;
            let pod_name = format!("{pod}.{}.{ns}.svc", names::headless_service(NAME));
            let mut conn = Resp::connect(forward.addr(), &ca, &pod_name).await?;
            ensure!(conn.call(&["AUTH", &password]).await? == "+OK\r\n");
            let mut missing = Vec::new();
            for key in &acknowledged {
                if conn.call(&["EXISTS", key]).await? != ":1\r\n" {
                    missing.push(key.clone());
                }
            }
            ensure!(missing.is_empty(), "{pod} lacks acknowledged writes {missing:?}");
        }
        report(TEST, "every acknowledged write on both pods, no restart");
        Ok(())
    })
    .await
}
