//! A real OCI registry process — Debian's `docker-registry` (Distribution 2.8), installed by
//! `scripts/install-registry.sh` when missing — on a free loopback port, plain HTTP, without
//! authentication, storing in a temporary directory. Killed when dropped, and by a watchdog
//! when the process that started it dies without dropping it.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting registry may take to answer `GET /v2/`: generous, since a loaded
/// machine runs many tests at once.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running registry.
pub struct Registry {
    port: u16,
    process: Option<Child>,
    binary: PathBuf,
    dir: tempfile::TempDir,
}

/// An answer of the registry's HTTP API.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Installs the registry from the distribution's package if it is missing; its path.
fn install(repo_root: &Path) -> Result<PathBuf> {
    let output = Command::new("bash")
        .arg(repo_root.join("scripts/install-registry.sh"))
        .output()
        .context("cannot run scripts/install-registry.sh")?;
    if !output.status.success() {
        bail!(
            "scripts/install-registry.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

impl Registry {
    /// Installs the registry if needed and starts it, trying other ports if one was taken
    /// meanwhile.
    pub fn start() -> Result<Self> {
        let binary = install(&crate::repo_root())?;
        let mut last_error = anyhow!("not started");
        for attempt in 0..3 {
            let port = crate::broker_process::free_ports(attempt, 1)?;
            let mut registry = Registry {
                port,
                process: None,
                binary: binary.clone(),
                dir: tempfile::Builder::new()
                    .prefix("ackbar-registry-")
                    .tempdir()?,
            };
            match registry.launch() {
                Ok(()) => return Ok(registry),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// `127.0.0.1:PORT`, as an `oci://` reference names the registry.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the registry and waits for it to exit; its storage stays.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    /// A plain HTTP/1.1 request to the registry's API: `path` from `/v2/`, extra `headers`, and
    /// a body (with its Content-Length).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let address = self.address();
        let mut stream = TcpStream::connect(&address)
            .with_context(|| format!("cannot connect to the registry at {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_response(&raw, method == "HEAD")
    }

    fn launch(&mut self) -> Result<()> {
        let config = self.dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{}\n",
                self.dir.path().join("storage").display(),
                self.port
            ),
        )?;
        let log_path = self.dir.path().join("registry.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut process = Command::new(&self.binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        watchdog(process.id());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!(
                    "the registry exited ({status}) before it answered on port {}:\n{log}",
                    self.port
                );
            }
            let ready = self
                .request("GET", "/v2/", &[], b"")
                .is_ok_and(|r| r.status == 200);
            if ready {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = process.kill();
                let _ = process.wait();
                bail!(
                    "the registry did not answer GET /v2/ on port {} within {START_TIMEOUT:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills `pid` once this process is gone (a test binary killed before it dropped the
/// registry); ends by itself when the registry does.
fn watchdog(pid: u32) {
    let script = "while kill -0 \"$1\" 2>/dev/null; do kill -0 \"$2\" 2>/dev/null || exit 0; \
                  sleep 1; done; kill \"$2\" 2>/dev/null";
    let _ = Command::new("bash")
        .args(["-c", script, "registry-watchdog"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn parse_response(raw: &[u8], head_only: bool) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in the registry's answer"))?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status line in the registry's answer"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked && !head_only {
        body = unchunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn unchunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("a chunk without its size line"))?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("a chunk shorter than its size");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
