//! The book's TOML examples load with the real parser, so an example cannot drift.

use super::*;

/// The ```toml blocks of a Markdown text, each with the line its first TOML line is on.
fn toml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        match &mut open {
            None if line.trim_start() == "```toml" => open = Some((number + 2, String::new())),
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(open.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// `example` made loadable in `dir`: the plugins, directories and credentials files it names exist
/// there, and the environment variables it grants are replaced with PATH, which every environment
/// has.
fn loadable(example: &str, dir: &Path) -> String {
    fn walk(value: &toml::Value, dir: &Path, unset: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    match (key.as_str(), value) {
                        ("plugin", toml::Value::String(path)) => {
                            let path = dir.join(path);
                            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                            std::fs::write(path, b"\0asm").unwrap();
                        }
                        ("registry_auth_file", toml::Value::String(path)) => {
                            std::fs::write(dir.join(path), r#"{"auths": {}}"#).unwrap();
                        }
                        ("read_only_dir", toml::Value::Table(grant)) => {
                            let host = grant["host"].as_str().unwrap();
                            std::fs::create_dir_all(dir.join(host)).unwrap();
                        }
                        ("env", toml::Value::Array(names)) => unset.extend(
                            names
                                .iter()
                                .filter_map(|n| n.as_str())
                                .filter(|n| std::env::var_os(n).is_none())
                                .map(String::from),
                        ),
                        _ => walk(value, dir, unset),
                    }
                }
            }
            toml::Value::Array(values) => values.iter().for_each(|v| walk(v, dir, unset)),
            _ => {}
        }
    }
    let value: toml::Value = toml::from_str(example).expect("the example is TOML");
    let mut unset = Vec::new();
    walk(&value, dir, &mut unset);
    unset
        .iter()
        .fold(example.to_string(), |text, name| text.replace(name, "PATH"))
}

/// The repository's root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn docs_dir() -> std::path::PathBuf {
    repo().join("docs/src")
}

/// The book's three-tenant example, loadable in `dir`.
pub(super) fn tenants_example(dir: &Path) -> String {
    let chapter = std::fs::read_to_string(docs_dir().join("tenants.md")).unwrap();
    let start = chapter
        .find("<!-- example: three tenants -->\n")
        .expect("the tenants chapter has the example");
    let (_, example) = toml_blocks(&chapter[start..]).swap_remove(0);
    loadable(&example, dir)
}

/// Every ```toml block of the book and the README is a configuration the real parser accepts,
/// so an example cannot drift from the code.
#[test]
fn every_toml_example_in_the_docs_loads() {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(docs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(repo().join("README.md"));
    let mut loaded = 0;
    for file in files {
        let markdown = std::fs::read_to_string(&file).unwrap();
        // A deploy's spec (a block starting `# spec`) is checked as a member whose config is
        // the chapter's last one with [control] would check it, for its first tenant.
        let mut member: Option<Config> = None;
        for (line, example) in toml_blocks(&markdown) {
            let dir = tempfile::tempdir().unwrap();
            let origin = format!("{}:{line}", file.strip_prefix(repo()).unwrap().display());
            if example.trim_start().starts_with("# spec") {
                let member = member.as_ref().unwrap_or_else(|| {
                    panic!("{origin}: a spec without a member config before it")
                });
                let tenant = member.declared_tenants().next().expect("a tenant");
                let plugin = dir.path().join("plugin.wasm");
                std::fs::write(&plugin, b"\0asm").unwrap();
                if let Err(e) = member.deployed_pipeline(tenant, "docs", &example, &plugin, []) {
                    panic!("{origin}: {e}");
                }
                loaded += 1;
                continue;
            }
            match Config::parse(&loadable(&example, dir.path()), &origin, dir.path()) {
                Ok(config) if config.control.is_some() => member = Some(config),
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
            loaded += 1;
        }
    }
    assert!(loaded >= 3, "only {loaded} examples found");
}

#[test]
fn the_three_tenant_example_loads() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::parse(&tenants_example(dir.path()), "ackbar.toml", dir.path()).unwrap();
    let names: Vec<&str> = c.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["shop", "analytics", "notify"]);
    let stats = c
        .pipelines
        .iter()
        .find(|p| p.name == "order-stats")
        .unwrap();
    assert_eq!(stats.tenant, "analytics");
    assert_eq!(stats.limits.deadline, Duration::from_millis(500));
    assert_eq!(stats.limits.memory_bytes, 32 << 20);
    assert_eq!(stats.limits.fuel, Some(50_000_000));
    assert_eq!(stats.tenant_limits.max_instances, 4);
    assert_eq!(stats.tenant_limits.pause_after_traps, 2);
    let dir_grant = stats.grants.read_only_dir.as_ref().unwrap();
    assert_eq!(dir_grant.guest, "/data");
    assert!(dir_grant.host.ends_with("reference-data"));
    let orders = c.pipelines.iter().find(|p| p.name == "orders").unwrap();
    assert_eq!(orders.grants.env[0].0, "PATH");
    assert_eq!(orders.tenant_limits.max_in_flight, 2048);
    let webhooks = c.pipelines.iter().find(|p| p.name == "webhooks").unwrap();
    assert_eq!(webhooks.grants.http_hosts, ["hooks.example.com:443"]);
    assert!(webhooks.grants.env.is_empty());
    assert_eq!(webhooks.limits.deadline, Duration::from_secs(5));
    let engine = c.engine_options();
    assert!(engine.metered);
    // max_instances + 2 × pipelines: shop 16 + 2, analytics 4 + 2, notify 8 + 2
    assert_eq!(engine.pooling.unwrap().instances, 18 + 6 + 10);
    assert_eq!(engine.pooling.unwrap().max_memory_bytes, 64 << 20);
}
