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
    let text = std::fs::read_to_string(workspace_root().join("docker-compose.yml"))
        .expect("docker-compose.yml");
    YamlLoader::load_from_str(&text)
        .expect("valid YAML")
        .remove(0)
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
const SERVICES: [&str; 4] = [
    "collector_service",
    "source_service",
    "retention_service",
    "monitoring_service",
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
        let environment: HashMap<String, String> = fields["environment"]
            .as_hash()
            .expect("environment mapping")
            .iter()
            .map(|(key, value)| {
                let value = value
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{value:?}"));
                (key.as_str().expect("key").to_owned(), value)
            })
            .collect();
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
