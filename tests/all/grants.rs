//! Capability grants: each opens exactly what it names and nothing else.

use crate::support::{guest, runtime};
use ackbar::bindings::Message;
use ackbar::outcome::{CallEnd, Decision, Outcome};
use ackbar::plugin::{DirGrant, Grants, InstancePool, PluginLimits};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn pool_with(grants: Grants) -> InstancePool {
    let path = guest("fixture");
    let bytes = std::fs::read(&path).unwrap();
    let plugin = runtime()
        .load_granted(&path, &bytes, PluginLimits::default(), Arc::new(grants))
        .expect("fixture loads");
    InstancePool::new(Arc::new(plugin))
}

fn call(pool: &InstancePool, payload: &str) -> Outcome {
    let message = Message {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        payload: Some(payload.as_bytes().to_vec()),
        headers: vec![],
        attempt: 1,
    };
    ackbar::plugin::block_on(pool.call(&message, &Arc::default()))
}

fn assert_allowed(pool: &InstancePool, payload: &str) {
    let outcome = call(pool, payload);
    assert!(
        matches!(outcome.end, CallEnd::Returned(Some(Decision::Ack))),
        "{payload}: {:?}",
        outcome.end
    );
}

fn refusal(pool: &InstancePool, payload: &str) -> String {
    match call(pool, payload).end {
        CallEnd::Failed { message, .. } if message.starts_with("refused: ") => message,
        other => panic!("{payload}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_read_only_directory_can_be_read_not_written_and_nothing_else_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rates.csv"), "EUR,1.0\n").unwrap();
    let pool = pool_with(Grants {
        read_only_dir: Some(DirGrant {
            host: dir.path().to_path_buf(),
            guest: "/data".into(),
        }),
        ..Grants::default()
    });
    assert_allowed(&pool, "open:/data/rates.csv");
    refusal(&pool, "write:/data/new.csv");
    refusal(&pool, "write:/data/rates.csv");
    assert!(!dir.path().join("new.csv").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("rates.csv")).unwrap(),
        "EUR,1.0\n"
    );
    refusal(&pool, "open:/data/../../etc/hostname");
    refusal(&pool, "open:/etc/hostname");
    refusal(&pool, "env");
}

#[test]
fn only_the_named_environment_variables_are_visible() {
    let pool = pool_with(Grants {
        env: vec![("SHOP_REGION".into(), "eu-1".into())],
        ..Grants::default()
    });
    assert_allowed(&pool, "env-is:SHOP_REGION=eu-1");
    let seen = refusal(&pool, "env-is:PATH=/usr/bin");
    assert!(seen.contains("PATH is Err(NotPresent)"), "{seen}");
}

/// An HTTP server answering 200 to every request, counting the connections it accepted.
fn http_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (address, accepted)
}

#[test]
fn http_reaches_listed_hosts_only_and_a_denied_request_never_connects() {
    let (address, accepted) = http_server();
    let granted = pool_with(Grants {
        http_hosts: vec![address.clone()],
        ..Grants::default()
    });
    assert_allowed(&granted, &format!("http:{address}"));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let port = address.rsplit_once(':').unwrap().1;
    let other_port = format!("localhost:{port}");
    let denied = refusal(&granted, &format!("http:{other_port}"));
    assert!(denied.contains("HttpRequestDenied"), "{denied}");
    let ungranted = pool_with(Grants::default());
    let denied = refusal(&ungranted, &format!("http:{address}"));
    assert!(denied.contains("HttpRequestDenied"), "{denied}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "denied requests make no connection"
    );
    // Raw sockets stay closed even with an HTTP grant.
    refusal(&granted, &format!("connect:{address}"));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
