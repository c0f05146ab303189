//! TLS for the process's HTTP clients (the OCI registry client, the OTLP exporter): reqwest is
//! built on rustls without a crypto provider of its own (no aws-lc or OpenSSL to build, see
//! host/Cargo.toml), so ring's is installed, once, before any client is built.

/// Installs ring as the process's rustls provider unless one is installed already.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one first; that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
