//! `ackbar new`: a standalone handler project in a new directory, for one guest language.
//!
//! The project files are the templates in `host/templates/<lang>/`, compiled into the binary.
//! Each project depends on its language's SDK package (`sdk/<lang>/` in the Ackbar repository):
//! by path when an Ackbar checkout is at hand, else the published version.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// `ackbar new` arguments.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The language of the handler.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The directory to create (it may exist if empty). Its last component names the project:
    /// lowercase letters, digits and `-`, starting with a letter.
    pub path: PathBuf,
    /// The `sdk/` directory of an Ackbar checkout: the project depends on the SDK there by
    /// path. Default: the checkout this program was built from, when it is still there.
    #[arg(long, conflicts_with = "published")]
    pub sdk: Option<PathBuf>,
    /// Depend on the SDK's published package even when a checkout is at hand.
    #[arg(long)]
    pub published: bool,
}

/// A guest language `ackbar new` can write a project for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `ackbar-guest` crate (cargo, wasm32-wasip2).
    Rust,
    /// Go, with the `github.com/ackbar-io/ackbar/sdk/go` module (Go's wasip1 port).
    Go,
    /// JavaScript, with the `@ackbar/guest` npm package (componentize-qjs).
    Js,
    /// Python, with the `ackbar-guest` package (componentize-py).
    Python,
}

impl Lang {
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Go => "go",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    /// The project files: (path in the project, template text).
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::Rust => templates::RUST,
            Lang::Go => templates::GO,
            Lang::Js => templates::JS,
            Lang::Python => templates::PYTHON,
        }
    }

    /// The value of `{{sdk_dependency}}`: how the project's manifest names the SDK.
    fn sdk_dependency(self, sdk: Option<&Path>) -> String {
        let Some(sdk) = sdk else {
            return match self {
                Lang::Rust => "\"0.1\"".into(),
                // go.mod always requires the module; only a local copy needs a replace line.
                Lang::Go => String::new(),
                Lang::Js => "\"^0.1.0\"".into(),
                Lang::Python => "\"ackbar-guest>=0.1,<0.2\"".into(),
            };
        };
        let path = sdk.join(self.dir());
        let path = path.to_string_lossy();
        match self {
            Lang::Rust => format!("{{ path = {} }}", toml::Value::from(path.as_ref())),
            Lang::Go => format!("replace {GO_MODULE} => {}", go_path(&path)),
            Lang::Js => serde_json::Value::from(format!("file:{path}")).to_string(),
            Lang::Python => toml::Value::from(format!(
                "ackbar-guest @ file://{}",
                path.replace('%', "%25").replace(' ', "%20")
            ))
            .to_string(),
        }
    }
}

/// The Go SDK's module path.
const GO_MODULE: &str = "github.com/ackbar-io/ackbar/sdk/go";

/// A directory in go.mod: quoted when it has characters go.mod does not take bare.
fn go_path(path: &str) -> String {
    if path.chars().any(|c| c.is_whitespace() || c == '"') {
        serde_json::Value::from(path).to_string()
    } else {
        path.to_string()
    }
}

mod templates {
    macro_rules! files {
        ($lang:literal: $($path:literal),+ $(,)?) => {
            &[$(($path, include_str!(concat!("../../templates/", $lang, "/", $path)))),+]
        };
    }

    pub static RUST: &[(&str, &str)] = files!("rust":
        "Cargo.toml", "src/lib.rs", "Makefile", "ackbar.toml", ".gitignore", "README.md");
    pub static GO: &[(&str, &str)] = files!("go":
        "go.mod", "main.go", "main_test.go", "Makefile", "ackbar.toml", ".gitignore", "README.md");
    pub static JS: &[(&str, &str)] = files!("js":
        "package.json", "package-lock.json", "src/handler.js", "test/handler.test.js", "Makefile", "ackbar.toml",
        ".gitignore", "README.md");
    pub static PYTHON: &[(&str, &str)] = files!("python":
        "pyproject.toml", "src/app.py", "tests/test_app.py", "Makefile", "ackbar.toml",
        ".gitignore", "README.md");
}

/// Writes the project and says what to do next.
pub fn run(args: NewArgs) -> Result<()> {
    let name = project_name(&args.path)?;
    let sdk = if args.published {
        None
    } else if let Some(sdk) = &args.sdk {
        Some(checked_sdk(sdk, args.lang)?)
    } else {
        built_from_checkout()
    };
    write_project(&args.path, args.lang, &name, sdk.as_deref())?;
    let how = match &sdk {
        Some(sdk) => format!("the SDK in {}", sdk.join(args.lang.dir()).display()),
        None => "the published SDK package".into(),
    };
    println!(
        "created {} ({:?} handler `{name}`, depending on {how})",
        args.path.display(),
        args.lang
    );
    println!(
        "next: cd {} && make build && make test",
        args.path.display()
    );
    println!(
        "then: ackbar invoke target/{name}.wasm --policy NACK_ON_ERROR --message hello --message retry"
    );
    println!("and:  ackbar run ackbar.toml   (the embedded broker; see README.md)");
    Ok(())
}

/// The project's name: the path's last component, checked.
fn project_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: the path names no directory", path.display()))?;
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "{}: the project name `{name}` must be lowercase letters, digits and `-`, starting \
             with a letter (it names the package, the component and the topic)",
            path.display()
        );
    }
    Ok(name.to_string())
}

/// An `--sdk` directory, made absolute, holding the language's SDK.
fn checked_sdk(sdk: &Path, lang: Lang) -> Result<PathBuf> {
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("--sdk {}", sdk.display()))?;
    let wit = sdk.join(lang.dir()).join(wit_in_sdk(lang));
    if !wit.is_file() {
        bail!(
            "--sdk {}: no {} SDK there ({} is missing); pass the `sdk` directory of an Ackbar checkout",
            sdk.display(),
            lang.dir(),
            wit.display()
        );
    }
    Ok(sdk)
}

/// Where each SDK keeps its copy of the WIT, relative to `sdk/<lang>/`.
fn wit_in_sdk(lang: Lang) -> &'static str {
    match lang {
        Lang::Python => "src/ackbar_guest/wit/ackbar.wit",
        _ => "wit/ackbar.wit",
    }
}

/// The `sdk/` directory of the checkout this program was compiled in, if it is still there.
fn built_from_checkout() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("rust/wit/ackbar.wit")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
}

fn write_project(dir: &Path, lang: Lang, name: &str, sdk: Option<&Path>) -> Result<()> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{}: exists and is not a directory", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{}: the directory is not empty; `ackbar new` writes only into a new or empty one",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dependency = lang.sdk_dependency(sdk);
    for (path, template) in lang.files() {
        let text = template
            .replace("{{name}}", name)
            .replace("{{name_snake}}", &name.replace('-', "_"))
            .replace("{{sdk_dependency}}", &dependency);
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// Every file under `templates/<lang>/` is in the binary's list, and nothing else.
    #[test]
    fn each_language_embeds_every_template_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for lang in Lang::value_variants() {
            let mut on_disk = Vec::new();
            let base = root.join(lang.dir());
            let mut stack = vec![base.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        on_disk.push(path.strip_prefix(&base).unwrap().display().to_string());
                    }
                }
            }
            let mut embedded: Vec<String> =
                lang.files().iter().map(|(p, _)| p.to_string()).collect();
            on_disk.sort();
            embedded.sort();
            assert_eq!(embedded, on_disk, "templates/{}", lang.dir());
        }
    }

    /// The JavaScript template's lockfile pins the same componentize-qjs as the examples'
    /// toolchain: a new project then installs offline from the tarballs the example build cached,
    /// and a version bump in one place cannot leave the other behind.
    #[test]
    fn the_javascript_lockfile_matches_the_example_toolchain() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |path: &Path| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let template = read(&manifest.join("templates/js/package-lock.json"));
        let toolchain = read(&manifest.join("../guest-examples/js/toolchain/package-lock.json"));
        let package: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(manifest.join("templates/js/package.json"))
                .unwrap()
                .replace("{{sdk_dependency}}", "\"*\""),
        )
        .unwrap();
        let pinned = &package["devDependencies"]["componentize-qjs"];
        assert_eq!(
            &template["packages"][""]["devDependencies"]["componentize-qjs"],
            pinned
        );
        assert_eq!(
            &toolchain["packages"][""]["dependencies"]["componentize-qjs"],
            pinned
        );
        let locked = template["packages"].as_object().unwrap();
        assert!(locked.len() > 2, "componentize-qjs and its native bindings");
        for (path, entry) in locked.iter().filter(|(path, _)| !path.is_empty()) {
            let mut entry = entry.clone();
            assert_eq!(
                entry.as_object_mut().unwrap().remove("dev"),
                Some(true.into()),
                "{path}"
            );
            assert_eq!(entry, toolchain["packages"][path], "{path}");
        }
    }

    #[test]
    fn project_names_are_checked() {
        assert_eq!(
            project_name(Path::new("/tmp/my-orders2")).unwrap(),
            "my-orders2"
        );
        for bad in ["My", "1st", "a_b", "a-", "x.y"] {
            let err = project_name(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn a_project_is_rendered_with_the_sdk_by_path_or_published() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("my-handler");
        write_project(
            &project,
            Lang::Rust,
            "my-handler",
            Some(Path::new("/opt/ackbar/sdk")),
        )
        .unwrap();
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-handler\""), "{manifest}");
        assert!(
            manifest.contains("ackbar-guest = { path = \"/opt/ackbar/sdk/rust\" }"),
            "{manifest}"
        );
        let makefile = std::fs::read_to_string(project.join("Makefile")).unwrap();
        assert!(makefile.contains("release/my_handler.wasm target/my-handler.wasm"));
        assert!(!makefile.contains("{{"));

        let err = write_project(&project, Lang::Rust, "my-handler", None).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");

        assert_eq!(Lang::Rust.sdk_dependency(None), "\"0.1\"");
        assert_eq!(Lang::Go.sdk_dependency(None), "");
        assert_eq!(
            Lang::Go.sdk_dependency(Some(Path::new("/a b/sdk"))),
            format!("replace {GO_MODULE} => \"/a b/sdk/go\"")
        );
        assert_eq!(
            Lang::Js.sdk_dependency(Some(Path::new("/a/sdk"))),
            "\"file:/a/sdk/js\""
        );
        assert_eq!(
            Lang::Python.sdk_dependency(Some(Path::new("/a b/sdk"))),
            "\"ackbar-guest @ file:///a%20b/sdk/python\""
        );
    }
}
