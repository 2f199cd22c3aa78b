//! docker-compose.yml is checked by parsing, as no Docker engine runs here: scaled services
//! must not collide, and every LOGAGG__ variable must be a real setting.

use std::collections::HashMap;
use std::path::Path;

use logagg::settings::{LogFormat, Settings};
use yaml_rust2::{Yaml, YamlLoader};

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn compose() -> Yaml {
    compose_file("docker-compose.yml")
}

fn compose_file(name: &str) -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join(name)).expect(name);
    YamlLoader::load_from_str(&text)
        .expect("valid YAML")
        .remove(0)
}

/// A service's environment as strings (numbers and booleans as YAML wrote them).
fn environment(fields: &HashMap<String, Yaml>) -> HashMap<String, String> {
    let Some(Yaml::Hash(hash)) = fields.get("environment") else {
        return HashMap::new();
    };
    hash.iter()
        .map(|(key, value)| {
            let value = match value {
                Yaml::String(text) => text.clone(),
                Yaml::Integer(number) => number.to_string(),
                Yaml::Boolean(flag) => flag.to_string(),
                other => format!("{other:?}"),
            };
            (key.as_str().expect("key").to_owned(), value)
        })
        .collect()
}

/// A service's mapping with YAML merge keys (`<<: *anchor`) applied.
fn merged(service: &Yaml) -> HashMap<String, Yaml> {
    let mut fields = HashMap::new();
    let Yaml::Hash(hash) = service else {
        panic!("service is not a mapping")
    };
    if let Some(Yaml::Hash(base)) = hash.get(&Yaml::String("<<".into())) {
        for (key, value) in base {
            fields.insert(key.as_str().expect("key").to_owned(), value.clone());
        }
    }
    for (key, value) in hash {
        if key.as_str() != Some("<<") {
            fields.insert(key.as_str().expect("key").to_owned(), value.clone());
        }
    }
    fields
}

/// logagg's own services in the compose file.
const SERVICES: [&str; 5] = [
    "collector_service",
    "source_service",
    "retention_service",
    "monitoring_service",
    "analyzer_service",
];

#[test]
fn scaled_services_have_no_fixed_names_or_host_ports() {
    let compose = compose();
    let services = &compose["services"];
    for name in ["rabbitmq", "mongo"].iter().chain(&SERVICES) {
        assert!(!services[*name].is_badvalue(), "service {name} missing");
    }
    for name in SERVICES {
        let fields = merged(&services[name]);
        assert!(
            !fields.contains_key("container_name"),
            "{name} has a container_name"
        );
        assert!(!fields.contains_key("ports"), "{name} publishes host ports");
        assert!(
            fields.contains_key("build"),
            "{name} is built from this repo"
        );
    }
}

#[test]
fn service_commands_name_workspace_binaries_and_valid_settings() {
    let compose = compose();
    for name in SERVICES.iter().chain(&["search_service", "gateway"]) {
        let name = *name;
        let fields = merged(&compose["services"][name]);
        let binary = fields["command"][0].as_str().expect("command");
        assert!(
            workspace_root().join(binary).join("src/main.rs").exists(),
            "{name} runs unknown binary {binary}"
        );
        let environment = environment(&fields);
        if !matches!(name, "retention_service" | "search_service") {
            assert!(environment.contains_key("LOGAGG__BROKER__URL"), "{name}");
        }
        assert!(environment.contains_key("LOGAGG__STORE__URL"), "{name}");
        let settings = Settings::load_all(&environment)
            .unwrap_or_else(|error| panic!("{name}'s environment is not valid settings: {error}"));
        assert_eq!(settings.telemetry.log_format, LogFormat::Json);
    }
}

#[test]
fn files_that_commands_name_are_in_the_image() {
    let compose = compose();
    let dockerfile =
        std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("Dockerfile");
    let services = compose["services"].as_hash().expect("services");
    for (name, service) in services {
        let fields = merged(service);
        let Some(command) = fields.get("command").and_then(Yaml::as_vec) else {
            continue;
        };
        let arguments: Vec<&str> = command.iter().filter_map(Yaml::as_str).collect();
        for pair in arguments.windows(2) {
            if pair[0] != "--timeline" {
                continue;
            }
            let file = pair[1];
            assert!(
                workspace_root().join(file).exists(),
                "{name:?} names {file}, which is not in the repository"
            );
            assert!(
                dockerfile.contains(&format!("COPY {file} /app/{file}")),
                "{name:?} names {file}, which the Dockerfile does not copy to /app/{file}"
            );
        }
    }
}

#[test]
fn broker_and_store_images_are_production_ones() {
    let compose = compose();
    let rabbitmq = compose["services"]["rabbitmq"]["image"]
        .as_str()
        .expect("image");
    let mongo = compose["services"]["mongo"]["image"]
        .as_str()
        .expect("image");
    assert!(rabbitmq.starts_with("rabbitmq:3."), "{rabbitmq}");
    assert!(
        mongo.starts_with("mongo:7") || mongo.starts_with("mongo:8"),
        "{mongo}"
    );
}

/// docker-compose.cluster.yml on top of docker-compose.yml, merged as Compose merges an
/// override (mappings key by key): every logagg service is given all three RabbitMQ nodes
/// and all three replica set members, and each name it is given is a service of the files.
#[test]
fn the_cluster_override_gives_every_service_every_node() {
    let base = compose();
    let cluster = compose_file("docker-compose.cluster.yml");
    let services = cluster["services"].as_hash().expect("services");
    let hostnames: Vec<String> = services
        .iter()
        .filter_map(|(name, service)| {
            let fields = merged(service);
            let image = fields.get("image")?.as_str()?.to_owned();
            image.starts_with("rabbitmq").then(|| {
                fields["hostname"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name:?} has no hostname"))
                    .to_owned()
            })
        })
        .collect();
    assert_eq!(hostnames.len(), 3, "three RabbitMQ nodes: {hostnames:?}");
    let mongo_members: Vec<&str> = services
        .iter()
        .filter(|(_, service)| {
            let fields = merged(service);
            fields.get("command").is_some_and(|command| {
                command.as_vec().is_some_and(|parts| {
                    parts.iter().any(|part| part.as_str() == Some("--replSet"))
                })
            })
        })
        .map(|(name, _)| name.as_str().expect("name"))
        .collect();
    assert_eq!(mongo_members.len(), 3, "three replica set members");

    // The nodes find each other by these names, and share one cookie.
    let peers = cluster["configs"]["rabbitmq-cluster"]["content"]
        .as_str()
        .expect("the cluster's rabbitmq.conf");
    for host in &hostnames {
        assert!(
            peers.contains(&format!("= rabbit@{host}")),
            "{host} not a peer: {peers}"
        );
    }
    let cookies: Vec<String> = services
        .values()
        .map(merged)
        .filter(|fields| fields.contains_key("hostname"))
        .map(|fields| environment(&fields)["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].clone())
        .collect();
    assert!(
        cookies.windows(2).all(|pair| pair[0] == pair[1]),
        "{cookies:?}"
    );
    let initiate = merged(&cluster["services"]["mongo-init"])["command"]
        .as_vec()
        .expect("mongo-init's command")
        .iter()
        .filter_map(Yaml::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    for member in &mongo_members {
        assert!(
            initiate.contains(&format!("'{member}:27017'")),
            "{member} not initiated"
        );
    }

    for name in SERVICES.iter().chain(&["search_service", "gateway"]) {
        let mut environment_of = environment(&merged(&base["services"][*name]));
        environment_of.extend(environment(&merged(&cluster["services"][*name])));
        let settings = Settings::load_all(&environment_of)
            .unwrap_or_else(|error| panic!("{name}'s environment is not valid settings: {error}"));
        let store = &settings.store.url;
        assert!(store.contains("replicaSet=rs0"), "{name}: {store}");
        for member in &mongo_members {
            assert!(
                store.contains(&format!("{member}:27017")),
                "{name}: {store}"
            );
        }
        assert_eq!(
            settings.store.write_concern_w,
            logagg::settings::WriteAcknowledgment::Majority,
            "{name}"
        );
        if *name == "retention_service" {
            continue;
        }
        let nodes = settings.broker.nodes();
        for host in &hostnames {
            assert!(
                nodes
                    .iter()
                    .any(|url| url.contains(&format!("@{host}:5672/"))),
                "{name} is not given node {host}: {nodes:?}"
            );
        }
        assert_eq!(settings.broker.quorum_group_size, 3, "{name}");
    }
}
