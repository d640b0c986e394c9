//! A real, throw-away `redis-server` for the tests of the Redis store: its own port on
//! 127.0.0.1, its own temporary directory, no persistence, killed when dropped. It can be
//! stopped, paused and restarted on the same port to test outages.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary to run; `TELLSCAN_TEST_REDIS_SERVER` overrides it for machines where it is not
/// on `PATH`.
fn binary() -> String {
    std::env::var("TELLSCAN_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

/// How long a fresh server may take to accept connections before the test gives up.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A running `redis-server` child process bound to loopback only.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start a server on a free loopback port and wait until it answers `PING`.
    pub fn start() -> RedisServer {
        // Port 0 lets the OS pick a free port; the listener is closed just before the server
        // binds it, a race that only matters if another process grabs that exact port.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("can bind a loopback port")
            .port();
        let dir = tempfile::tempdir().expect("can create a temporary directory for redis-server");
        let mut server = RedisServer { port, dir, child: None };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kill the server and wait for it to exit (its data is gone: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port and wait until it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freeze the server (SIGSTOP): connections are still accepted by the kernel but nothing
    /// answers, the way a stalled or partitioned Redis looks to a client.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undo [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .arg(which)
            .arg(pid.to_string())
            .status()
            .expect("can run kill to signal redis-server");
        assert!(status.success(), "kill {which} {pid} failed");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}): the Redis store tests need a local redis-server \
                     (e.g. `apt-get install redis-server`), or set TELLSCAN_TEST_REDIS_SERVER to its path",
                    binary()
                )
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server exited early ({status}); log:\n{}", self.log_tail());
            }
            if answers_ping(self.port) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server on port {} did not answer within {READY_WITHIN:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Whether a server on the loopback `port` answers an inline `PING`.
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server ignores SIGTERM but not SIGKILL, which `kill()` sends.
        self.stop();
    }
}
