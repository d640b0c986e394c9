//! One self-contained binary: copied alone into an empty folder it detects and serves with the
//! weights built into it (`--version` and `GET /health` name their SHA-256), and every option
//! that several commands share is accepted before or after the command's name.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tellscan::forensics::sha256_hex;

/// The SHA-256 of a file the project ships under `weights/`.
fn shipped_sha256(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights").join(file);
    sha256_hex(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// `tellscan` started in `dir`, with no `TELLSCAN_*` setting from the caller's environment.
fn tellscan_in(binary: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir).env("RUST_LOG", "error");
    for (name, _) in std::env::vars() {
        if name.starts_with("TELLSCAN_") || name == "REDIS_URL" {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn tellscan(dir: &Path) -> Command {
    tellscan_in(Path::new(env!("CARGO_BIN_EXE_tellscan")), dir)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", stderr(&out), stdout(&out));
    stdout(&out)
}

/// The one report of `detect` on one file.
fn report(out: Output) -> Value {
    let text = ok(out);
    let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    line["report"].clone()
}

#[test]
fn the_binary_alone_detects_and_serves_from_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("tellscan");
    std::fs::copy(env!("CARGO_BIN_EXE_tellscan"), &binary).expect("the binary copies");
    let run = || tellscan_in(&binary, dir.path());
    let model = shipped_sha256("detector.safetensors");
    let fusion = shipped_sha256("fusion.json");

    let version = ok(run().arg("--version").output().unwrap());
    assert_eq!(
        version.lines().collect::<Vec<_>>(),
        [
            format!("tellscan {}", env!("CARGO_PKG_VERSION")),
            format!("model  sha256:{model} (built-in)"),
            format!("fusion sha256:{fusion} (built-in)"),
        ],
    );

    let image = common::shared("fixtures/c2pa/C.jpg");
    let r = report(run().arg("detect").arg(&image).output().unwrap());
    assert!(r["modules"]["ml"]["score"].is_number(), "the ml module ran: {r}");
    assert_eq!(r["modules"]["ml"]["abstained"], false, "{r}");
    assert_eq!(r["verdict"], "AI generated", "{r}");

    // serve: the embedded store goes in ./data of this folder, the weights come from inside
    let mut server =
        run().args(["serve", "--addr", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn().expect("serve starts");
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve says where it listens").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let health = http_get(&format!("http://{addr}/health"));
    let health: Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(health["model_loaded"], true, "{health}");
    assert_eq!(health["weights"]["model"]["source"], "built-in", "{health}");
    assert_eq!(health["weights"]["model"]["sha256"], model.as_str(), "{health}");
    assert_eq!(health["weights"]["fusion"]["source"], "built-in", "{health}");
    assert_eq!(health["weights"]["fusion"]["sha256"], fusion.as_str(), "{health}");
    let studio = http_get(&format!("http://{addr}/studio"));
    assert!(studio.contains("tellscan Studio"), "{studio}");
    let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
    let started = Instant::now();
    while server.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dir.path().join("data").is_dir(), "the store went in the working folder");
    let entries: Vec<PathBuf> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 2, "nothing but the binary and its store: {entries:?}");
}

/// A blocking `GET` of a loopback URL; the body of a 200.
fn http_get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let response = common::server::client().get(url).send().await.expect("answered");
        assert_eq!(response.status(), 200, "{url}");
        response.text().await.unwrap()
    })
}

/// Both orders of a command line: the options `global` before the command `words`, and after.
fn both_orders<'a>(global: &[&'a str], words: &[&'a str]) -> [Vec<&'a str>; 2] {
    let before = global.iter().chain(words).copied().collect();
    let after = words.iter().chain(global).copied().collect();
    [before, after]
}

#[test]
fn shared_options_are_accepted_before_and_after_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    let image = common::shared("fixtures/c2pa/C.jpg");
    let image = image.to_str().unwrap();

    // --data-dir: a key created with the option after `create` is listed with it before `keys`
    let store = here.join("store");
    let store = store.to_str().unwrap();
    let created = ok(tellscan(here)
        .args(["keys", "create", "--tier", "free", "--name", "after", "--data-dir", store])
        .output()
        .unwrap());
    let key = created.lines().last().unwrap().to_string();
    let id = key.split('_').nth(1).unwrap();
    for args in both_orders(&["--data-dir", store], &["keys", "list", "--json"]) {
        let listed = ok(tellscan(here).args(&args).output().unwrap());
        assert!(listed.contains(id) && listed.contains("\"after\""), "{args:?}: {listed}");
    }

    // --config: a file that moves the store, before or after the command
    let config = here.join("tellscan.toml");
    let configured = here.join("configured");
    std::fs::write(&config, format!("[server]\ndata_dir = {:?}\n", configured.to_str().unwrap())).unwrap();
    let config = config.to_str().unwrap();
    for (name, args) in ["c0", "c1"]
        .into_iter()
        .zip(both_orders(&["--config", config], &["keys", "create", "--tier", "free"]))
    {
        ok(tellscan(here).args(&args).args(["--name", name]).output().unwrap());
    }
    let listed = ok(tellscan(here).args(["keys", "list", "--data-dir"]).arg(&configured).output().unwrap());
    assert!(listed.contains("c0") && listed.contains("c1"), "{listed}");

    // --redis-url: the store named is the one tried, in either position
    for args in both_orders(&["--redis-url", "redis://127.0.0.1:1/"], &["keys", "list"]) {
        let out = tellscan(here).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} reached no Redis yet succeeded");
        assert!(stderr(&out).to_lowercase().contains("redis"), "{args:?}: {}", stderr(&out));
    }

    // --weights and --fusion: a missing file is named, in either position
    for (flag, file) in [("--weights", "nothing.safetensors"), ("--fusion", "nothing.json")] {
        for args in both_orders(&[flag, file], &["detect", image]) {
            let out = tellscan(here).args(&args).output().unwrap();
            assert!(!out.status.success(), "{args:?}");
            assert!(
                stderr(&out).contains(file) && stderr(&out).contains("does not exist"),
                "{}",
                stderr(&out)
            );
        }
    }
    // …and a file that is there replaces the built-in copy, which --version shows
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/detector.safetensors");
    let weights = weights.to_str().unwrap();
    let version = ok(tellscan(here).args(["--weights", weights, "--version"]).output().unwrap());
    assert!(version.contains(&format!("({weights})")), "{version}");
    for args in both_orders(&["--weights", weights], &["detect", image]) {
        assert_eq!(report(tellscan(here).args(&args).output().unwrap())["modules"]["ml"]["abstained"], false);
    }

    // --trust-anchors: a missing PEM is an error, in either position
    for args in both_orders(&["--trust-anchors", "missing.pem"], &["detect", image]) {
        let out = tellscan(here).args(&args).output().unwrap();
        assert!(!out.status.success() && stderr(&out).contains("missing.pem"), "{args:?}: {}", stderr(&out));
    }

    // the limits: an image over them is refused, in either position
    for limit in [["--max-side", "100"], ["--max-pixels", "10000"]] {
        for args in both_orders(&limit, &["detect", image]) {
            let text = ok(tellscan(here).args(&args).output().unwrap());
            let line: Value = serde_json::from_str(text.trim()).unwrap();
            assert_eq!(line["error"], "image_too_large", "{args:?}: {line}");
        }
    }
}
