//! The realistic traffic profile: messages in the style of real systems, for benchmarks and
//! demos that must not flatter word search. Pure code.
//!
//! Each service gets a few hundred templates: every skeleton below (HDFS block operations,
//! sshd authentication, HTTP access lines, JVM exceptions with stack traces, Kubernetes
//! events, logfmt application lines) once per component of the service. Templates are drawn
//! Zipf-like (a few very common, a long tail of rare ones), within the drawn severity. Every
//! [`NEW_TEMPLATE_EVERY`] logs a new template appears (a skeleton under a component never
//! seen before), and new templates take [`NEW_TEMPLATE_SHARE`] of the traffic. The fields
//! (UUIDs, request ids, IPv4 and IPv6 addresses, ports, durations, byte counts, paths, user
//! names, block ids) are drawn fresh for each log, so most logs carry words no other log has.

use std::fmt::Write as _;

use logagg::Severity;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// A new template appears after this many logs.
pub const NEW_TEMPLATE_EVERY: u64 = 2_000;
/// Share of logs drawn from the templates that appeared while running.
pub const NEW_TEMPLATE_SHARE: f64 = 0.02;
/// Longest message, bytes: a long stack trace is cut there.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Zipf exponent of the template ranks.
const ZIPF_EXPONENT: f64 = 1.1;

/// How severe a skeleton's lines are: the pool a drawn severity picks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn of(severity: Severity) -> Level {
        match severity {
            Severity::Trace | Severity::Debug => Level::Debug,
            Severity::Info | Severity::Notice => Level::Info,
            Severity::Warn => Level::Warn,
            Severity::Error | Severity::Fatal => Level::Error,
        }
    }
}

/// Skeletons: `{name}` is a field drawn per log, `{component}` the template's component.
const SKELETONS: &[(Level, &str)] = &[
    // HDFS block operations.
    (Level::Info, "{component} Receiving block {blk} src: /{ip4}:{port} dest: /{ip4}:{port}"),
    (Level::Info, "{component} PacketResponder {small} for block {blk} terminating"),
    (Level::Info, "{component} Received block {blk} of size {bytes} from /{ip4}"),
    (Level::Info, "{component} BLOCK* NameSystem.addStoredBlock: blockMap updated: {ip4}:{port} is added to {blk} size {bytes}"),
    (Level::Info, "{component} Deleting block {blk} file {path}"),
    (Level::Debug, "{component} Verification succeeded for {blk}"),
    (Level::Warn, "{component} Slow BlockReceiver write packet to mirror took {ms}ms (threshold=300ms) volume {path}"),
    (Level::Error, "{component} {ip4}:{port}:DataXceiver error processing WRITE_BLOCK operation src: /{ip4}:{port} dst: /{ip4}:{port}"),
    // sshd.
    (Level::Info, "{component} sshd[{pid}]: Accepted publickey for {user} from {ip4} port {port} ssh2: RSA SHA256:{b64}"),
    (Level::Info, "{component} sshd[{pid}]: pam_unix(sshd:session): session opened for user {user}(uid={uid}) by (uid=0)"),
    (Level::Info, "{component} sshd[{pid}]: Disconnected from user {user} {ip4} port {port}"),
    (Level::Warn, "{component} sshd[{pid}]: Failed password for invalid user {user} from {ip4} port {port} ssh2"),
    (Level::Warn, "{component} sshd[{pid}]: Invalid user {user} from {ip6} port {port}"),
    (Level::Error, "{component} sshd[{pid}]: error: kex_exchange_identification: Connection closed by remote host {ip4} port {port}"),
    // HTTP access lines.
    (Level::Info, "{ip4} - {user} [{clf}] \"GET {url} HTTP/1.1\" 200 {bytes} \"-\" \"{agent}\" rt={secs} rid={rid} upstream={component}"),
    (Level::Info, "{ip4} - - [{clf}] \"POST /api/v2/{component}/{uuid} HTTP/1.1\" 201 {bytes} \"https://shop.example.com{url}\" \"{agent}\" rt={secs} rid={rid}"),
    (Level::Info, "{ip6} - {user} [{clf}] \"PUT /api/v1/{component}/items/{small} HTTP/2.0\" 204 0 \"-\" \"{agent}\" rt={secs} rid={rid}"),
    (Level::Debug, "{ip4} - - [{clf}] \"GET /static/{component}/{hex8}.js HTTP/1.1\" 304 0 \"-\" \"{agent}\" rt={secs}"),
    (Level::Warn, "{ip4} - {user} [{clf}] \"GET {url} HTTP/1.1\" 404 {bytes} \"-\" \"{agent}\" rt={secs} rid={rid} upstream={component}"),
    (Level::Warn, "{ip4} - - [{clf}] \"POST /api/v1/{component}/login HTTP/1.1\" 429 {bytes} \"-\" \"{agent}\" rt={secs} rid={rid}"),
    (Level::Error, "{ip4} - {user} [{clf}] \"POST /api/v2/{component}/{uuid} HTTP/1.1\" 502 {bytes} \"-\" \"{agent}\" rt={secs} rid={rid} upstream_addr={ip4}:{port}"),
    (Level::Error, "{ip6} - - [{clf}] \"GET {url} HTTP/1.1\" 503 {bytes} \"-\" \"{agent}\" rt={secs} rid={rid}"),
    // JVM exceptions with stack traces.
    (Level::Error, "Exception in thread \"{thread}\" java.lang.IllegalStateException: {component} not ready for request {rid}{trace}"),
    (Level::Error, "java.net.SocketTimeoutException: Read timed out after {ms}ms talking to {ip4}:{port} ({component}){trace}"),
    (Level::Error, "java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"{field}\" is null in {component}{trace}"),
    (Level::Error, "org.postgresql.util.PSQLException: ERROR: deadlock detected on relation {field} ({component}, txid {bigint}){trace}"),
    (Level::Warn, "java.io.IOException: Broken pipe writing {bytes} bytes to {ip4}:{port} ({component}), retrying{trace}"),
    // Kubernetes events, JSON inside the message.
    (Level::Info, "{{\"kind\":\"Event\",\"reason\":\"Pulled\",\"object\":\"pod/{pod}\",\"namespace\":\"{component}\",\"message\":\"Successfully pulled image registry.local/{component}:{version} in {ms}ms\"}}"),
    (Level::Info, "{{\"kind\":\"Event\",\"reason\":\"Scheduled\",\"object\":\"pod/{pod}\",\"namespace\":\"{component}\",\"message\":\"Successfully assigned {component}/{pod} to node-{small}\"}}"),
    (Level::Info, "{{\"kind\":\"Event\",\"reason\":\"Killing\",\"object\":\"pod/{pod}\",\"namespace\":\"{component}\",\"message\":\"Stopping container {component} after {secs}s\"}}"),
    (Level::Warn, "{{\"kind\":\"Event\",\"reason\":\"BackOff\",\"object\":\"pod/{pod}\",\"namespace\":\"{component}\",\"message\":\"Back-off restarting failed container {component} in pod {pod}\"}}"),
    (Level::Warn, "{{\"kind\":\"Event\",\"reason\":\"Unhealthy\",\"object\":\"pod/{pod}\",\"namespace\":\"{component}\",\"message\":\"Readiness probe failed: Get http://{ip4}:{port}/healthz: context deadline exceeded\"}}"),
    (Level::Warn, "{{\"kind\":\"Event\",\"reason\":\"FailedScheduling\",\"object\":\"pod/{pod}\",\"namespace\":\"{component}\",\"message\":\"0/{small} nodes are available: {small} Insufficient memory\"}}"),
    // Application lines, logfmt.
    (Level::Info, "level=info component={component} msg=\"order placed\" order_id={uuid} user={user} amount={amount} currency=EUR duration={ms}ms trace_id={hex32}"),
    (Level::Info, "level=info component={component} msg=\"session started\" session={rid} user={user} client={ip4} ttl={small}s"),
    (Level::Info, "level=info component={component} msg=\"request served\" method=GET path={url} status=200 bytes={bytes} duration={ms}ms rid={rid}"),
    (Level::Info, "level=info component={component} msg=\"token refreshed\" user={user} expires_in={small}s key_id={hex8}"),
    (Level::Info, "level=info component={component} msg=\"file uploaded\" path={path} size={bytes} sha256={hex32}"),
    (Level::Debug, "level=debug component={component} msg=\"cache miss\" key=session:{rid} ttl={small}s shard={small}"),
    (Level::Debug, "level=debug component={component} msg=\"db query\" table={field} rows={small} duration={ms}ms conn={ip4}:{port}"),
    (Level::Debug, "level=debug component={component} msg=\"gc pause\" duration={ms}ms young={bytes} old={bytes}"),
    (Level::Warn, "level=warn component={component} msg=\"retrying upstream call\" upstream={ip4}:{port} attempt={small} backoff={ms}ms rid={rid}"),
    (Level::Warn, "level=warn component={component} msg=\"slow query\" table={field} duration={ms}ms rows={bigint} trace_id={hex32}"),
    (Level::Warn, "level=warn component={component} msg=\"payment declined\" order_id={uuid} user={user} reason=insufficient_funds amount={amount}"),
    (Level::Error, "level=error component={component} msg=\"upstream failed\" upstream={ip6} port={port} error=\"connection reset by peer\" rid={rid}"),
    (Level::Error, "level=error component={component} msg=\"write failed\" path={path} error=\"no space left on device\" bytes={bytes}"),
];

/// Components every service has; each skeleton appears once under each.
const COMPONENTS: &[&str] = &[
    "api",
    "worker",
    "scheduler",
    "store",
    "cache",
    "gateway",
    "billing",
    "indexer",
];

const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "trent", "victor", "walter", "root", "admin", "deploy", "ubuntu", "postgres",
    "jenkins", "git", "oracle", "test", "guest",
];

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "kube-probe/1.29",
];

const URL_PARTS: &[&str] = &[
    "cart", "checkout", "products", "search", "account", "orders", "images", "reviews", "wishlist",
    "api", "v1", "v2", "static", "assets", "profile", "settings",
];

const FIELDS: &[&str] = &[
    "orders",
    "order_items",
    "customers",
    "payments",
    "sessions",
    "inventory",
    "shipments",
    "invoices",
    "ledger_entries",
    "audit_log",
];

const FRAMES: &[&str] = &[
    "com.example.{component}.Handler.handle",
    "com.example.{component}.Service.process",
    "com.example.{component}.Repository.find",
    "com.example.common.Retry.call",
    "org.springframework.web.servlet.FrameworkServlet.service",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter",
    "io.netty.channel.AbstractChannelHandlerContext.invokeChannelRead",
    "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker",
    "java.base/java.lang.Thread.run",
    "com.zaxxer.hikari.pool.HikariPool.getConnection",
];

/// One template: a skeleton under a component.
#[derive(Debug, Clone)]
struct Template {
    skeleton: &'static str,
    component: std::borrow::Cow<'static, str>,
}

/// A service's templates by level, each ordered by rank (most common first): indices into
/// the templates every service starts with, so 10,000 services cost 7 MiB, not 200.
#[derive(Debug, Default)]
struct Pools {
    levels: [Vec<u16>; 4],
}

/// Draws realistic messages for a set of services.
#[derive(Debug)]
pub struct RealisticMessages {
    rng: SmallRng,
    /// The templates every service starts with, by level.
    templates: [Vec<Template>; 4],
    services: Vec<Pools>,
    /// Cumulative Zipf weights by rank, as long as the longest pool.
    cumulative: Vec<f64>,
    /// Templates that appeared while running, by level, over all services.
    new_templates: [Vec<Template>; 4],
    generated: u64,
}

impl RealisticMessages {
    pub fn new(services: usize, seed: u64) -> RealisticMessages {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_7e57);
        let mut templates: [Vec<Template>; 4] = Default::default();
        for (level, skeleton) in SKELETONS {
            for component in COMPONENTS {
                templates[*level as usize].push(Template {
                    skeleton,
                    component: std::borrow::Cow::Borrowed(component),
                });
            }
        }
        let services = (0..services.max(1))
            .map(|_| {
                let mut pools = Pools::default();
                for (pool, level) in pools.levels.iter_mut().zip(&templates) {
                    *pool = (0..level.len())
                        .map(|index| u16::try_from(index).expect("under 65,536 templates"))
                        .collect();
                    shuffle(pool, &mut rng);
                }
                pools
            })
            .collect::<Vec<_>>();
        let longest = services
            .iter()
            .flat_map(|pools| pools.levels.iter().map(Vec::len))
            .max()
            .unwrap_or(1);
        let mut total = 0.0;
        let cumulative = (0..longest)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(ZIPF_EXPONENT);
                total
            })
            .collect();
        RealisticMessages {
            rng,
            templates,
            services,
            cumulative,
            new_templates: Default::default(),
            generated: 0,
        }
    }

    /// Templates each service has to begin with.
    pub fn templates_per_service() -> usize {
        SKELETONS.len() * COMPONENTS.len()
    }

    /// The next message of the service at `service` (an index into the services given to
    /// [`new`](Self::new)) at `severity`.
    pub fn message(&mut self, service: usize, severity: Severity) -> String {
        self.generated += 1;
        if self.generated % NEW_TEMPLATE_EVERY == 0 {
            let (level, skeleton) = SKELETONS[self.rng.random_range(0..SKELETONS.len())];
            let component = format!("module{}", self.generated / NEW_TEMPLATE_EVERY);
            self.new_templates[level as usize].push(Template {
                skeleton,
                component: component.into(),
            });
        }
        let level = Level::of(severity) as usize;
        let fresh = &self.new_templates[level];
        let template = if !fresh.is_empty() && self.rng.random_bool(NEW_TEMPLATE_SHARE) {
            fresh[self.rng.random_range(0..fresh.len())].clone()
        } else {
            let pool = &self.services[service % self.services.len()].levels[level];
            let cumulative = &self.cumulative[..pool.len()];
            let draw = self.rng.random_range(0.0..cumulative[cumulative.len() - 1]);
            let rank = cumulative.partition_point(|total| *total <= draw);
            self.templates[level][usize::from(pool[rank.min(pool.len() - 1)])].clone()
        };
        self.fill(&template)
    }

    /// The template with its fields drawn; `{{` and `}}` are literal braces.
    fn fill(&mut self, template: &Template) -> String {
        let skeleton = template.skeleton;
        let mut out = String::with_capacity(skeleton.len() + 96);
        let mut at = 0;
        while let Some(character) = skeleton[at..].chars().next() {
            let rest = &skeleton[at..];
            if rest.starts_with("{{") || rest.starts_with("}}") {
                out.push(character);
                at += 2;
            } else if let (Some('{'), Some(close)) = (Some(character), rest.find('}')) {
                self.field(&rest[1..close], &template.component, &mut out);
                at += close + 1;
            } else {
                out.push(character);
                at += character.len_utf8();
            }
        }
        if out.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
        }
        out
    }

    fn field(&mut self, name: &str, component: &str, out: &mut String) {
        let rng = &mut self.rng;
        let _ = match name {
            "component" => write!(out, "{component}"),
            "blk" => write!(
                out,
                "blk_{}",
                rng.random_range(-(1_i64 << 62)..(1_i64 << 62))
            ),
            "ip4" => write!(
                out,
                "10.{}.{}.{}",
                rng.random_range(0..32),
                rng.random_range(0..256),
                rng.random_range(1..255)
            ),
            "ip6" => write!(
                out,
                "2001:db8:{:x}:{:x}::{:x}",
                rng.random_range(0..0xffff_u32),
                rng.random_range(0..0xffff_u32),
                rng.random_range(1..0xffff_u32)
            ),
            "port" => write!(out, "{}", rng.random_range(1024..65535)),
            "pid" => write!(out, "{}", rng.random_range(300..400_000)),
            "uid" => write!(out, "{}", rng.random_range(1000..1100)),
            "small" => write!(out, "{}", rng.random_range(1..64)),
            "bigint" => write!(out, "{}", rng.random_range(100_000..10_000_000_000_u64)),
            "bytes" => write!(out, "{}", rng.random_range(0..5_000_000)),
            "ms" => write!(out, "{}", rng.random_range(1..30_000)),
            "secs" => write!(out, "{:.3}", rng.random_range(0.001..9.0)),
            "amount" => write!(out, "{:.2}", rng.random_range(1.0..2_000.0)),
            "user" => write!(out, "{}", USERS[rng.random_range(0..USERS.len())]),
            "agent" => write!(out, "{}", AGENTS[rng.random_range(0..AGENTS.len())]),
            "field" => write!(out, "{}", FIELDS[rng.random_range(0..FIELDS.len())]),
            "thread" => write!(
                out,
                "pool-{}-thread-{}",
                rng.random_range(1..9),
                rng.random_range(1..65)
            ),
            "version" => write!(
                out,
                "v{}.{}.{}",
                rng.random_range(1..4),
                rng.random_range(0..30),
                rng.random_range(0..10)
            ),
            "uuid" => write!(
                out,
                "{}",
                uuid::Builder::from_random_bytes(rng.random()).into_uuid()
            ),
            "rid" => write!(out, "{:016x}", rng.random::<u64>()),
            "hex8" => write!(out, "{:08x}", rng.random::<u32>()),
            "hex32" => write!(out, "{:032x}", rng.random::<u128>()),
            "b64" => {
                const ALPHABET: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                for _ in 0..43 {
                    out.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
                }
                Ok(())
            }
            "path" => {
                let depth = rng.random_range(2..6);
                for _ in 0..depth {
                    out.push('/');
                    out.push_str(URL_PARTS[rng.random_range(0..URL_PARTS.len())]);
                }
                write!(out, "/{:08x}.dat", rng.random::<u32>())
            }
            "url" => {
                for _ in 0..rng.random_range(1..4) {
                    out.push('/');
                    out.push_str(URL_PARTS[rng.random_range(0..URL_PARTS.len())]);
                }
                if rng.random_bool(0.5) {
                    write!(
                        out,
                        "?id={}&page={}",
                        rng.random_range(1..1_000_000),
                        rng.random_range(1..50)
                    )
                } else {
                    Ok(())
                }
            }
            "pod" => write!(
                out,
                "{component}-{:08x}-{:05x}",
                rng.random::<u32>(),
                rng.random_range(0..0xfffff_u32)
            ),
            "clf" => write!(
                out,
                "{:02}/Dec/2026:{:02}:{:02}:{:02} +0000",
                rng.random_range(1..29),
                rng.random_range(0..24),
                rng.random_range(0..60),
                rng.random_range(0..60)
            ),
            "trace" => {
                // Most traces are short; some run to the 8 KiB the profile allows.
                let frames = if rng.random_bool(0.1) {
                    rng.random_range(40..90)
                } else {
                    rng.random_range(3..15)
                };
                for _ in 0..frames {
                    let frame =
                        FRAMES[rng.random_range(0..FRAMES.len())].replace("{component}", component);
                    let class = frame.rsplit('.').nth(1).unwrap_or("Main");
                    let _ = write!(
                        out,
                        "\n\tat {frame}({class}.java:{})",
                        rng.random_range(20..900)
                    );
                }
                Ok(())
            }
            other => write!(out, "{{{other}}}"),
        };
    }
}

/// Fisher-Yates with the generator's own random numbers, so a seed gives one order.
fn shuffle<T>(items: &mut [T], rng: &mut SmallRng) {
    for index in (1..items.len()).rev() {
        items.swap(index, rng.random_range(0..=index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_skeleton_fills_without_leftover_placeholders() {
        let mut messages = RealisticMessages::new(1, 1);
        for (_, skeleton) in SKELETONS {
            let text = messages.fill(&Template {
                skeleton,
                component: "api".into(),
            });
            assert!(
                !text.contains("{component}") && !text.contains("{ip4}"),
                "{text}"
            );
            assert!(!text.contains("{{") && !text.contains("}}"), "{text}");
        }
    }

    #[test]
    fn messages_span_sizes_and_carry_mostly_unique_words() {
        let mut messages = RealisticMessages::new(5, 7);
        let severities = [
            Severity::Debug,
            Severity::Info,
            Severity::Info,
            Severity::Warn,
            Severity::Error,
        ];
        let mut sizes = Vec::new();
        let mut seen: HashMap<String, u32> = HashMap::new();
        for index in 0..20_000 {
            let text = messages.message(index % 5, severities[index % severities.len()]);
            sizes.push(text.len());
            for word in logagg::words::message_words(&text) {
                *seen.entry(word).or_default() += 1;
            }
        }
        sizes.sort_unstable();
        assert!(sizes[0] >= 40, "smallest {}", sizes[0]);
        assert!(
            *sizes.last().unwrap() <= MAX_MESSAGE_BYTES,
            "largest {}",
            sizes.last().unwrap()
        );
        assert!(
            *sizes.last().unwrap() > 4 * 1024,
            "no long stack trace in 20,000 logs"
        );
        let once = seen.values().filter(|count| **count == 1).count();
        assert!(
            once * 2 > seen.len(),
            "{once} of {} words appear once",
            seen.len()
        );
        assert!(messages.new_templates.iter().map(Vec::len).sum::<usize>() == 10);
    }
}
