//! The deployment files in `deploy/`, checked as far as this machine can (it has no container
//! engine and no Kubernetes): the Compose file validates against the Compose specification
//! and every Kubernetes object against Kubernetes' schemas (`check-jsonschema` and
//! `kubernetes-validate` from PyPI, installed by `scripts/install-deps.sh`); and the commands,
//! flags and environment they give the nodes are run as they are, on loopback, and form a
//! three-node cluster whose every node is ready.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use collabstream_tests::{binary, free_ports};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} runs: {e}"));
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let file = repo().join("deploy/compose/compose.yaml");
    let (ok, out) =
        run("check-jsonschema", &["--builtin-schema", "vendor.compose-spec", &file.to_string_lossy()]);
    assert!(ok, "{out}");
    // The validator does refuse what the specification does not allow.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("compose.yaml");
    std::fs::write(&bad, "services:\n  node1:\n    imagee: collabstream\n").expect("write");
    let (ok, out) =
        run("check-jsonschema", &["--builtin-schema", "vendor.compose-spec", &bad.to_string_lossy()]);
    assert!(!ok, "a misspelt key passed: {out}");
}

#[test]
fn every_kubernetes_object_validates_and_kustomize_lists_them_all() {
    let dir = repo().join("deploy/kubernetes");
    let mut objects: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    objects.sort();
    assert!(objects.len() >= 5, "{objects:?}");
    let paths: Vec<String> = objects.iter().map(|n| dir.join(n).to_string_lossy().into_owned()).collect();
    let mut args = vec!["--strict"];
    args.extend(paths.iter().map(String::as_str));
    let (ok, out) = run("kubernetes-validate", &args);
    assert!(ok, "{out}");
    let kinds = ["ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"];
    for kind in kinds {
        assert!(
            out.to_lowercase().contains(&format!("resource {}/", kind.to_lowercase())),
            "no {kind}: {out}"
        );
    }
    let listed = yaml(&dir.join("kustomization.yaml"))["resources"].clone();
    let mut listed: Vec<String> = listed
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file").to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, objects, "kustomization.yaml lists every object, and only those");
    // The validator does refuse an object Kubernetes would.
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n")
        .expect("write");
    assert!(!run("kubernetes-validate", &["--strict", &bad.to_string_lossy()]).0, "a misspelt field passed");
}

/// A YAML file as JSON (anchors resolved), read by PyYAML.
#[test]
fn grafana_has_a_data_source_for_every_panel_and_they_reach_the_compose_nodes() {
    let provisioned = yaml(&repo().join("deploy/grafana/provisioning/datasources/collabstream.yaml"));
    let sources = provisioned["datasources"].as_array().expect("datasources");
    let by_uid = |uid: &str| sources.iter().find(|d| d["uid"] == uid).cloned();
    // The image listens on 9201 (HTTP) and 9203 (PostgreSQL); compose names the first node node1.
    let (env, _) = image();
    assert_eq!(env.get("COLLABSTREAM_PG_LISTEN").map(String::as_str), Some("0.0.0.0:9203"));
    let prometheus = by_uid("collabstream").expect("the Prometheus data source");
    assert_eq!(
        (prometheus["type"].as_str(), prometheus["url"].as_str()),
        (Some("prometheus"), Some("http://node1:9201"))
    );
    let sql = by_uid("collabstream-sql").expect("the PostgreSQL data source");
    assert_eq!(sql["type"], "grafana-postgresql-datasource");
    assert_eq!(sql["url"], "node1:9203");
    assert_eq!(sql["jsonData"]["sslmode"], "disable", "the listener speaks no TLS");
    let mut kinds = BTreeMap::new();
    for file in std::fs::read_dir(repo().join("deploy/grafana/dashboards")).expect("dashboards") {
        let path = file.expect("entry").path();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        // Panels name their data source by a variable (`${datasource}`), so that the dashboard
        // imports into any Grafana; the variable's default is the provisioned data source.
        let variables = dash["templating"]["list"].as_array().expect("variables");
        let resolve = |reference: &Value| -> (String, Value) {
            let uid = reference["uid"].as_str().expect("a data source uid");
            let name = uid.strip_prefix("${").and_then(|u| u.strip_suffix('}'));
            let name =
                name.unwrap_or_else(|| panic!("{}: data source {uid} is not a variable", path.display()));
            let var = variables
                .iter()
                .find(|v| v["name"] == name && v["type"] == "datasource")
                .unwrap_or_else(|| panic!("{}: no data-source variable {name}", path.display()));
            assert_eq!(var["query"], reference["type"], "{}: {name} lists another kind", path.display());
            (var["current"]["value"].as_str().expect("a default").to_string(), reference["type"].clone())
        };
        let queried = variables.iter().filter(|v| v["type"] == "query").map(|v| &v["datasource"]);
        let targets = dash["panels"].as_array().expect("panels").iter().flat_map(|p| {
            [&p["datasource"]]
                .into_iter()
                .chain(p["targets"].as_array().expect("targets").iter().map(|t| &t["datasource"]))
        });
        for reference in targets.chain(queried) {
            let (uid, kind) = resolve(reference);
            let source = by_uid(&uid).unwrap_or_else(|| panic!("{}: no data source {uid}", path.display()));
            assert_eq!(source["type"], kind, "{}", path.display());
            *kinds.entry(uid).or_insert(0) += 1;
        }
    }
    assert!(kinds.get("collabstream-sql").is_some_and(|n| *n >= 1), "no SQL panel: {kinds:?}");
}

fn yaml(path: &Path) -> Value {
    let script = "import json, sys, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let (ok, out) = run("python3", &["-c", script, &path.to_string_lossy()]);
    assert!(ok, "{out}");
    let docs: Value = serde_json::from_str(&out).expect("JSON");
    let mut docs = docs.as_array().expect("documents").clone();
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

/// The Dockerfile's runtime `ENV` (name → value) and `ENTRYPOINT`.
fn image() -> (BTreeMap<String, String>, Vec<String>) {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    // The runtime stage is the last one.
    let runtime = joined.rsplit("\nFROM ").next().expect("a stage");
    let mut env = BTreeMap::new();
    let mut entrypoint = Vec::new();
    for line in runtime.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV name=value");
                env.insert(k.to_string(), v.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT in exec form");
        }
    }
    assert!(runtime.contains("\nUSER 10001"), "the runtime image runs as a user without privileges");
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("/readyz"), "a health check on /readyz");
    // The build embeds the web UI's chart library (server/build.rs): the build stage must get
    // the packages ui/package-lock.json pins, not whatever the context holds.
    let build = joined.split("\nFROM ").find(|s| s.contains(" AS build")).expect("a build stage");
    assert!(
        build.contains("COPY --from=ui /ui/node_modules ui/node_modules"),
        "the build stage gets ui's packages"
    );
    assert!(joined.contains("npm ci --prefix /ui"), "ui's packages come from its lock file");
    (env, entrypoint)
}

/// Three node processes, stopped (SIGKILL, by pid) when dropped.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts node `i` of three as `program args` with `env`, where `rewrite` has turned the
/// deployment's addresses into loopback ones; waits for all three to be ready and to agree on
/// a leader.
fn start_and_wait(
    launches: Vec<(String, Vec<String>, BTreeMap<String, String>)>,
    grpc: &[u16],
    http: &[u16],
    dir: &Path,
) {
    let mut nodes = Nodes(Vec::new());
    for (i, (program, args, env)) in launches.into_iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("node-{}.log", i + 1))).expect("log");
        let child = Command::new(program)
            .args(&args)
            .envs(&env)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the node starts");
        nodes.0.push(child);
    }
    let logs = || {
        (1..=3)
            .map(|i| std::fs::read_to_string(dir.join(format!("node-{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (i, child) in nodes.0.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("node {} exited ({status}) with the deployment's flags; logs:\n{}", i + 1, logs());
            }
        }
        let ready = http.iter().all(|p| ready(*p));
        let status = run(
            &binary().to_string_lossy(),
            &["cluster", "status", "--endpoint", &format!("127.0.0.1:{}", grpc[0])],
        )
        .1;
        if ready && status.contains("leader: node") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ready cluster within 60 s; status: {status}\nlogs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(nodes);
}

/// Three gRPC ports and three HTTP ports, all six distinct.
fn ports() -> (Vec<u16>, Vec<u16>) {
    let mut grpc = free_ports(6).expect("free ports");
    let http = grpc.split_off(3);
    (grpc, http)
}

/// Whether `GET /readyz` on `127.0.0.1:port` answers 200.
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

#[test]
fn the_compose_nodes_form_a_cluster_with_the_flags_and_environment_they_are_given() {
    let (image_env, entrypoint) = image();
    assert_eq!(entrypoint, ["collabstream", "server"]);
    let compose = yaml(&repo().join("deploy/compose/compose.yaml"));
    let (grpc, http) = ports();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut launches = Vec::new();
    for i in 0..3 {
        let name = format!("node{}", i + 1);
        let service = &compose["services"][&name];
        let command: Vec<String> = service["command"]
            .as_array()
            .expect("command")
            .iter()
            .map(|a| a.as_str().expect("arg").to_string())
            .collect();
        assert_eq!(command, ["--node-id", &(i + 1).to_string()], "{name}");
        // The config file is mounted from beside the compose file.
        let volumes: Vec<&str> =
            service["volumes"].as_array().expect("volumes").iter().filter_map(Value::as_str).collect();
        assert!(
            volumes.contains(&"./collabstream.toml:/etc/collabstream/collabstream.toml:ro"),
            "{volumes:?}"
        );
        let mut env = image_env.clone();
        for (k, v) in service["environment"].as_object().expect("environment") {
            env.insert(k.clone(), v.as_str().expect("a string").to_string());
        }
        let loopback = |v: &str| {
            let mut v = v.to_string();
            for (j, port) in grpc.iter().enumerate() {
                v = v.replace(&format!("node{}:9202", j + 1), &format!("127.0.0.1:{port}"));
            }
            v
        };
        env.insert("COLLABSTREAM_PEERS".into(), loopback(&env["COLLABSTREAM_PEERS"]));
        assert_eq!(env["COLLABSTREAM_HTTP_LISTEN"], "0.0.0.0:9201");
        assert_eq!(env["COLLABSTREAM_GRPC_LISTEN"], "0.0.0.0:9202");
        assert_eq!(env["COLLABSTREAM_PG_LISTEN"], "0.0.0.0:9203");
        env.insert("COLLABSTREAM_HTTP_LISTEN".into(), format!("127.0.0.1:{}", http[i]));
        env.insert("COLLABSTREAM_GRPC_LISTEN".into(), format!("127.0.0.1:{}", grpc[i]));
        env.insert("COLLABSTREAM_PG_LISTEN".into(), "127.0.0.1:0".into());
        assert_eq!(env["COLLABSTREAM_CONFIG"], "/etc/collabstream/collabstream.toml");
        env.insert(
            "COLLABSTREAM_CONFIG".into(),
            repo().join("deploy/compose/collabstream.toml").to_string_lossy().into_owned(),
        );
        env.insert("COLLABSTREAM_DATA_DIR".into(), dir.path().join(&name).to_string_lossy().into_owned());
        let mut args = entrypoint[1..].to_vec();
        args.extend(command);
        launches.push((binary().to_string_lossy().into_owned(), args, env));
    }
    start_and_wait(launches, &grpc, &http, dir.path());
}

#[test]
fn the_statefulset_pods_form_a_cluster_with_the_command_and_environment_they_are_given() {
    let k8s = repo().join("deploy/kubernetes");
    let set = yaml(&k8s.join("statefulset.yaml"));
    assert_eq!(set["spec"]["podManagementPolicy"], "Parallel", "pods wait for each other to be ready");
    assert_eq!(yaml(&k8s.join("service-headless.yaml"))["spec"]["publishNotReadyAddresses"], true);
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<String> = container["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|a| a.as_str().expect("arg").to_string())
        .collect();
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").to_string())
        .collect();
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // The ConfigMap's file, where the pod mounts it.
    let config =
        yaml(&k8s.join("configmap.yaml"))["data"]["collabstream.toml"].as_str().expect("config").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("collabstream.toml");
    std::fs::write(&config_path, config).expect("config");
    let (grpc, http) = ports();
    // `collabstream` on the PATH, as in the image.
    let bin_dir = binary().parent().expect("bin dir").to_string_lossy().into_owned();
    let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let mut launches = Vec::new();
    for i in 0..3 {
        let mut env = BTreeMap::new();
        for e in container["env"].as_array().expect("env") {
            env.insert(
                e["name"].as_str().expect("name").to_string(),
                e["value"].as_str().expect("value").to_string(),
            );
        }
        let mut peers = env["COLLABSTREAM_PEERS"].clone();
        for (j, port) in grpc.iter().enumerate() {
            peers = peers
                .replace(&format!("collabstream-{j}.collabstream-peers:9202"), &format!("127.0.0.1:{port}"));
        }
        assert!(!peers.contains("collabstream-"), "{peers}");
        env.insert("COLLABSTREAM_PEERS".into(), peers);
        assert_eq!(env["COLLABSTREAM_PG_LISTEN"], "0.0.0.0:9203");
        env.insert("COLLABSTREAM_HTTP_LISTEN".into(), format!("127.0.0.1:{}", http[i]));
        env.insert("COLLABSTREAM_GRPC_LISTEN".into(), format!("127.0.0.1:{}", grpc[i]));
        env.insert("COLLABSTREAM_PG_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("COLLABSTREAM_CONFIG".into(), config_path.to_string_lossy().into_owned());
        env.insert(
            "COLLABSTREAM_DATA_DIR".into(),
            dir.path().join(format!("pod-{i}")).to_string_lossy().into_owned(),
        );
        // The pod's name gives the node id: collabstream-0 is node 1.
        env.insert("HOSTNAME".into(), format!("collabstream-{i}"));
        env.insert("PATH".into(), path.clone());
        let mut argv = command[1..].to_vec();
        argv.extend(args.iter().cloned());
        launches.push((command[0].clone(), argv, env));
    }
    start_and_wait(launches, &grpc, &http, dir.path());
}
