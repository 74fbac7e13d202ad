//! A self-signed certificate generated for the test (rcgen), the server's rustls configuration
//! made from it, and a rustls client that trusts it: the independent TLS peer of the tests.
//! Included by path (`#[path = "common/tls.rs"] mod certs;`), not from `common`: the fuzz
//! crate shares `common` and has neither rustls nor rcgen.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Tls {
    pub client: Arc<rustls::ClientConfig>,
    pub server: Arc<rustls::ServerConfig>,
}

/// A fresh certificate for `localhost`, its server configuration and a client trusting it.
pub fn certs() -> Tls {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let server = stompbox::server::tls::TlsConfig::from_der(vec![cert.clone()], key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Tls {
        client: Arc::new(client),
        server,
    }
}
