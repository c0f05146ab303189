//! Handlers outside this repository: `ackbar new` writes a project for each language, which
//! builds with that language's usual tools against the SDK package by path (as a published
//! version would be used), passes its own unit test, and runs in `ackbar check` and `invoke`.
//! Each SDK packs on its own and carries the WIT it was built against.

use crate::support::{ackbar, example, guest, repo_root, text};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `command`, failing the test with its output when it fails.
fn succeed(what: &str, command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The toolchain cache the guest build scripts install into.
fn toolchains() -> PathBuf {
    let cache = std::env::var_os("ACKBAR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/ackbar"));
    cache.join("toolchains")
}

/// `make TARGET` in a generated project, offline: every tool and package comes from the caches
/// the example builds filled.
fn make(project: &Path, target: &str, lang: &str) -> String {
    let mut command = Command::new("make");
    command.arg("-C").arg(project).arg(target);
    offline_env(&mut command, lang);
    succeed(&format!("{lang}: make {target}"), &mut command)
}

fn offline_env(command: &mut Command, lang: &str) {
    command
        .env("CARGO_NET_OFFLINE", "true")
        .env("GOPROXY", "off")
        .env("npm_config_offline", "true")
        .env("PIP_NO_INDEX", "1")
        // A CARGO_TARGET_DIR meant for the host must not move the project's component.
        .env_remove("CARGO_TARGET_DIR");
    if lang == "go" {
        let go = toolchains().join("go-1.27.3/go/bin");
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", go.display()));
    }
}

/// Writes, builds, tests, checks and invokes a new project in `lang`.
fn new_project_works(lang: &str) {
    // The examples' build installs the language's toolchain and fills the package caches once.
    match lang {
        "rust" => drop(guest("orders")),
        _ => drop(example(lang, "orders")),
    }
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(format!("hello-{lang}"));
    let sdk = repo_root().join("sdk");
    let out = ackbar(&[
        "new",
        "--lang",
        lang,
        "--sdk",
        sdk.to_str().unwrap(),
        project.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "depending on the SDK in {}",
            sdk.join(lang).display()
        )),
        "{}",
        text(&out.stdout)
    );

    make(&project, "build", lang);
    make(&project, "test", lang);

    let component = project.join(format!("target/hello-{lang}.wasm"));
    let out = ackbar(&["check", component.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("implements world handler of ackbar:plugin@0.1.0"),
        "{}",
        text(&out.stdout)
    );

    let out = ackbar(&[
        "invoke",
        component.to_str().unwrap(),
        "--policy",
        "NACK_ON_ERROR",
        "--message",
        "hello",
        "--message",
        "",
        "--message",
        "retry now",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "message 0 attempt 1: ok -> commit",
            "message 1 attempt 1: returned:reject -> reject",
            "message 2 attempt 1: error -> redeliver (asked to retry (attempt 1))",
            "message 2 attempt 2: error -> redeliver (asked to retry (attempt 2))",
            "message 2 attempt 3: ok -> commit",
        ],
        "{lang}"
    );
}

#[test]
fn a_new_rust_project_builds_tests_and_runs() {
    new_project_works("rust");
}

#[test]
fn a_new_go_project_builds_tests_and_runs() {
    new_project_works("go");
}

#[test]
fn a_new_javascript_project_builds_tests_and_runs() {
    new_project_works("js");
}

#[test]
fn a_new_python_project_builds_tests_and_runs() {
    new_project_works("python");
}

#[test]
fn new_refuses_a_bad_name_and_a_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("My_Handler");
    let out = ackbar(&["new", "--lang", "go", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the project name `My_Handler` must be lowercase"),
        "{}",
        text(&out.stderr)
    );
    assert!(!bad.exists(), "nothing is written for a refused name");

    let used = dir.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("main.go"), "package main\n").unwrap();
    let out = ackbar(&["new", "--lang", "go", used.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not empty"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(used.join("main.go")).unwrap(),
        "package main\n",
        "an existing file is left alone"
    );
}

/// Each SDK ships a copy of the WIT; it must be the contract in `wit/`.
#[test]
fn every_sdk_carries_the_contract_it_was_built_against() {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/sync-wit.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}run scripts/sync-wit.sh",
        text(&out.stderr)
    );
}

/// The Rust SDK is a crate of its own: `cargo package` builds it from the packed files alone.
#[test]
fn the_rust_sdk_packs_on_its_own() {
    drop(guest("orders")); // fills the registry cache with wit-bindgen
    let target = tempfile::tempdir().unwrap();
    succeed(
        "cargo package",
        Command::new(env!("CARGO"))
            .args(["package", "--offline", "--allow-dirty", "--manifest-path"])
            .arg(repo_root().join("sdk/rust/Cargo.toml"))
            .arg("--target-dir")
            .arg(target.path()),
    );
}

/// The JavaScript SDK is an npm package: `npm pack` takes the sources, the types and the WIT.
#[test]
fn the_javascript_sdk_packs_on_its_own() {
    let out = succeed(
        "npm pack",
        Command::new("npm")
            .args(["pack", "--dry-run", "--json", "--offline"])
            .current_dir(repo_root().join("sdk/js")),
    );
    let packed: serde_json::Value = serde_json::from_str(&out).expect("npm pack --json");
    let files: Vec<&str> = packed[0]["files"]
        .as_array()
        .expect("a file list")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    for needed in [
        "package.json",
        "wit/ackbar.wit",
        "types/index.d.ts",
        "types/testing.d.ts",
        "src/index.js",
        "src/testing.js",
        "bin/ackbar-guest-build.js",
    ] {
        assert!(files.contains(&needed), "{needed} not packed: {files:?}");
    }
    assert_eq!(packed[0]["name"], "@ackbar/guest");
}

/// The Python SDK builds a wheel offline (setuptools from the wheels the example build keeps),
/// and the wheel carries the WIT and its type information.
#[test]
fn the_python_sdk_builds_a_wheel() {
    drop(example("python", "orders")); // keeps setuptools in the wheel folder
    let wheels = toolchains().parent().unwrap().join("wheels");
    let out = tempfile::tempdir().unwrap();
    // A copy: building writes build/ and *.egg-info next to the sources.
    let source = out.path().join("src");
    succeed(
        "copying sdk/python",
        Command::new("cp")
            .arg("-R")
            .arg(repo_root().join("sdk/python"))
            .arg(&source),
    );
    succeed(
        "pip wheel",
        Command::new("python3")
            .args(["-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"])
            .arg("--find-links")
            .arg(&wheels)
            .arg("--wheel-dir")
            .arg(out.path().join("dist"))
            .arg(&source),
    );
    let wheel = std::fs::read_dir(out.path().join("dist"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel");
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("ackbar_guest-0.1.0-py3-none-any"),
        "{name}"
    );
    let listing = succeed(
        "listing the wheel",
        Command::new("python3")
            .args(["-m", "zipfile", "-l"])
            .arg(&wheel),
    );
    for needed in [
        "ackbar_guest/wit/ackbar.wit",
        "ackbar_guest/py.typed",
        "ackbar_guest/testing.py",
    ] {
        assert!(
            listing.contains(needed),
            "{needed} not in the wheel:\n{listing}"
        );
    }
}
