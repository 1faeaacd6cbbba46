//! Interoperability with OpenTDF's own Rust SDK (`opentdf` 0.17, an independent implementation):
//! its `KasClient` rewraps a DIVE file at the DIVE KAS over Connect RPC, and a file OpenTDF
//! encrypts to the KAS's published key decrypts through DIVE's client.
//!
//! OpenTDF's client trusts only the public web roots and allows plain HTTP on loopback, so the test
//! puts a plain-to-TLS bridge on loopback in front of the KAS (the KAS itself only speaks TLS with
//! the installation's certificate).

mod common;

use std::io::Cursor;
use std::sync::Arc;

use common::*;
use dive_kas::{ClientKeyKind, KeyAlgorithm, RemoteKas};
use dive_ztdf::TdfReader;
use opentdf::manifest::{IntegrityInformationExt, KeyAccessExt};
use opentdf::{Segment, TdfArchiveMemoryBuilder, TdfEncryption, TdfManifest};
use opentdf_crypto::{KeyEncapsulation, RsaOaepKem};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

const PLAINTEXT: &[u8] = b"interoperable: DIVE KAS, OpenTDF client";

/// Listen on loopback in plain TCP and forward each connection over TLS to the KAS.
async fn bridge(kas_port: u16, tls: Arc<rustls::ClientConfig>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut plain, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(tcp) = TcpStream::connect(("127.0.0.1", kas_port)).await else {
                    return;
                };
                let name = ServerName::try_from("localhost").unwrap();
                let Ok(mut secure) = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut plain, &mut secure).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentdf_kas_client_rewraps_at_the_dive_kas() {
    let e = env().await;
    let alice = e.login("alice").await;
    let carol = e.login("carol").await;
    let pki = dive_pki::Pki::open(e.home.path()).unwrap();
    let port = bridge(e.kas.addr.port(), Arc::new(pki.client_config().unwrap())).await;
    let config = opentdf::kas_discovery::OpentdfConfiguration::for_kas_connect(format!(
        "http://localhost:{port}"
    ));

    let file = e
        .encrypt(
            KeyAlgorithm::Rsa2048,
            "SECRET//FVEY//REL TO USA, GBR",
            PLAINTEXT,
        )
        .await;
    let reader = TdfReader::open(Cursor::new(&file)).unwrap();
    let manifest: TdfManifest =
        serde_json::from_slice(&reader.manifest().to_json().unwrap()).unwrap();

    // OpenTDF's client: its own ephemeral RSA key, its RS256 request token (key not announced),
    // Connect JSON to /kas.AccessService/Rewrap.
    let client = opentdf::KasClient::new(&config, alice.clone()).unwrap();
    let dek = client.rewrap_standard_tdf(&manifest).await.unwrap();
    let mut unlocked = reader.unlock_with_dek(&dek).unwrap();
    let mut out = Vec::new();
    unlocked.decrypt_to(&mut out).unwrap();
    assert_eq!(out, PLAINTEXT);

    // The same client for a user the policy refuses gets OpenTDF's access-denied error.
    let client = opentdf::KasClient::new(&config, carol).unwrap();
    let err = client.rewrap_standard_tdf(&manifest).await.unwrap_err();
    assert_eq!(err.error_code(), "ACCESS_DENIED", "{err}");

    let rows = e.kas.audit.recent(10).await.unwrap();
    assert!(rows.iter().any(|r| r.decision == "permit"
        && r.transport == "connect+json"
        && r.srt_key.as_deref() == Some("unverified")));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_opentdf_encrypts_to_the_kas_key_decrypts_through_dive() {
    let e = env().await;
    let alice = e.login("alice").await;
    let (pem, _) = RemoteKas::new(e.http.clone(), &e.kas.url, &alice)
        .public_key(KeyAlgorithm::Rsa2048)
        .await
        .unwrap();
    // OpenTDF's encryption, manifest, wrapping (RSA-OAEP SHA-1, no kid), binding and archive.
    let enc = TdfEncryption::new().unwrap();
    let segmented = enc.encrypt_with_segments(PLAINTEXT, 1024).unwrap();
    let mut manifest = TdfManifest::new("0.payload".into(), e.kas.url.clone());
    let policy = r#"{"uuid":"5b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d","body":{"dataAttributes":[{"attribute":"https://dive.coalition/attr/classification/value/secret"},{"attribute":"https://dive.coalition/attr/releasableTo/value/usa"},{"attribute":"https://dive.coalition/attr/coi/value/fvey"},{"attribute":"https://dive.coalition/attr/coiOperator/value/all"},{"attribute":"https://dive.coalition/attr/releasableToIndustry/value/false"}],"dissem":[]}}"#;
    manifest.set_policy_raw(policy);
    let ka = &mut manifest.encryption_information.key_access[0];
    ka.wrapped_key = RsaOaepKem::with_sha1()
        .wrap(enc.payload_key(), &pem)
        .unwrap();
    ka.access_type = "wrapped".into();
    ka.kid = None;
    ka.generate_policy_binding_raw(policy, enc.payload_key())
        .unwrap();
    for s in &segmented.segment_info {
        manifest
            .encryption_information
            .integrity_information
            .segments
            .push(Segment {
                hash: s.hash.clone(),
                segment_size: Some(s.plaintext_size),
                encrypted_segment_size: Some(s.encrypted_size),
            });
    }
    let ii = &mut manifest.encryption_information.integrity_information;
    ii.segment_size_default = 1024;
    ii.encrypted_segment_size_default = 1024 + 28;
    ii.generate_root_signature(&segmented.gmac_tags, enc.payload_key())
        .unwrap();
    let mut builder = TdfArchiveMemoryBuilder::new();
    builder
        .add_entry_with_segments(&manifest, &segmented.segments, 0)
        .unwrap();
    let file = builder.finish().unwrap();

    for kind in [ClientKeyKind::Rsa2048, ClientKeyKind::EcP256] {
        let kas = RemoteKas::new(e.http.clone(), &e.kas.url, &alice).with_client_key(kind);
        assert_eq!(decrypt(&kas, &file).await.unwrap(), PLAINTEXT);
    }
    e.stop().await;
}
