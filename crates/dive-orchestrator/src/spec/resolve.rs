//! From a YAML tree to a validated [`StackSpec`]: key checking, interpolation, defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::parse_duration;
use super::env::parse_env_file;
use super::error::{SpecError, SpecErrorKind as K};
use super::interpolate::{InterpError, interpolate};
use super::types::*;
use super::yaml::{Kind, Node};

/// Keys a process runtime has no use for; accepted for compose compatibility and reported.
const IGNORED_SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "ports",
    "volumes",
    "volumes_from",
    "networks",
    "network_mode",
    "container_name",
    "deploy",
    "expose",
    "cap_add",
    "cap_drop",
    "user",
    "hostname",
    "domainname",
    "platform",
    "pull_policy",
    "privileged",
    "logging",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "ulimits",
    "sysctls",
    "tmpfs",
    "init",
    "tty",
    "stdin_open",
    "security_opt",
    "pid",
    "ipc",
    "devices",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "cpus",
    "cpu_shares",
    "cpuset",
    "shm_size",
    "links",
    "external_links",
    "secrets",
    "configs",
    "read_only",
    "group_add",
    "runtime",
    "scale",
    "userns_mode",
    "cgroup_parent",
    "isolation",
    "mac_address",
    "oom_score_adj",
    "pids_limit",
    "storage_opt",
    "attach",
    "develop",
    "annotations",
];
const IGNORED_TOP_KEYS: &[&str] = &["version", "volumes", "networks", "configs", "secrets"];

pub const LABEL_CLASS: &str = "dive.service.class";
pub const LABEL_DESCRIPTION: &str = "dive.service.description";
pub const LABEL_TIMEOUT: &str = "dive.service.timeout";
/// How many times a failed start is retried (a whole number; the scheduler has a default).
pub const LABEL_RETRIES: &str = "dive.service.retries";
/// The first retry delay (a duration; later ones double).
pub const LABEL_RETRY_BACKOFF: &str = "dive.service.retry_backoff";
pub const LABEL_HEALTH_HTTP: &str = "dive.health.http";
pub const LABEL_HEALTH_TCP: &str = "dive.health.tcp";
/// PEM certificates the `dive.health.http` probe trusts (relative to the stack file's directory).
pub const LABEL_HEALTH_CA: &str = "dive.health.ca";
const KNOWN_DIVE_LABELS: &[&str] = &[
    LABEL_HEALTH_CA,
    LABEL_CLASS,
    LABEL_DESCRIPTION,
    LABEL_TIMEOUT,
    LABEL_RETRIES,
    LABEL_RETRY_BACKOFF,
    LABEL_HEALTH_HTTP,
    LABEL_HEALTH_TCP,
];

/// Compose healthcheck defaults.
const HC_INTERVAL: Duration = Duration::from_secs(30);
const HC_TIMEOUT: Duration = Duration::from_secs(30);
const HC_RETRIES: u32 = 3;
const HC_START_INTERVAL: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(10);

type R<T> = Result<T, SpecError>;

pub struct Resolver<'a> {
    /// The stack file as the caller named it (used in messages).
    file: PathBuf,
    /// Absolute directory of the stack file.
    dir: PathBuf,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    notices: Vec<Notice>,
    ignored: Vec<IgnoredKey>,
    /// Service being resolved, for notices.
    current: Option<String>,
}

impl<'a> Resolver<'a> {
    pub fn new(file: &Path, dir: PathBuf, lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Resolver {
            file: file.to_path_buf(),
            dir,
            lookup,
            notices: Vec::new(),
            ignored: Vec::new(),
            current: None,
        }
    }

    fn err(&self, pos: Pos, path: impl Into<String>, kind: K) -> SpecError {
        SpecError::new(self.file.clone(), pos, path, kind)
    }

    fn notice(&mut self, pos: Pos, message: String) {
        self.notices.push(Notice {
            service: self.current.clone(),
            pos,
            message,
        });
    }

    fn wrong_type(&self, node: &Node, path: &str, expected: &'static str) -> SpecError {
        self.err(
            node.pos,
            path,
            K::WrongType {
                expected,
                found: node.type_name(),
            },
        )
    }

    fn entries<'n>(&self, node: &'n Node, path: &str) -> R<&'n [(Node, Node)]> {
        match &node.kind {
            Kind::Map(e) => Ok(e),
            _ if node.is_null() => Ok(&[]),
            _ => Err(self.wrong_type(node, path, "a mapping")),
        }
    }

    fn items<'n>(&self, node: &'n Node, path: &str) -> R<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Ok(items),
            _ if node.is_null() => Ok(&[]),
            _ => Err(self.wrong_type(node, path, "a list")),
        }
    }

    /// Interpolate `text` written at `pos`.
    fn interp(&mut self, text: &str, pos: Pos, path: &str) -> R<String> {
        let mut unset = Vec::new();
        let out = interpolate(text, self.lookup, &mut unset).map_err(|e| match e {
            InterpError::Missing { var, message } => {
                let detail = if message.is_empty() {
                    format!("{var} is not set")
                } else {
                    format!("{var}: {message}")
                };
                self.err(pos, path, K::MissingVariable(detail))
            }
            InterpError::Syntax(m) => self.err(pos, path, K::BadInterpolation(m)),
        })?;
        for var in unset {
            self.notice(
                pos,
                format!("{path}: variable {var} is not set; using an empty string"),
            );
        }
        Ok(out)
    }

    /// A scalar value, interpolated.
    fn string(&mut self, node: &Node, path: &str) -> R<String> {
        match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() => self.interp(text, node.pos, path),
            _ => Err(self.wrong_type(node, path, "a string")),
        }
    }

    fn boolean(&mut self, node: &Node, path: &str) -> R<bool> {
        match self.string(node, path)?.as_str() {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            other => Err(self.err(
                node.pos,
                path,
                K::Invalid(format!("expected true or false, found \"{other}\"")),
            )),
        }
    }

    fn duration(&mut self, node: &Node, path: &str) -> R<Duration> {
        let s = self.string(node, path)?;
        parse_duration(&s).map_err(|m| self.err(node.pos, path, K::InvalidDuration(s.clone(), m)))
    }

    /// A string, or a list of strings.
    fn string_or_list(&mut self, node: &Node, path: &str) -> R<Vec<(String, Pos)>> {
        if let Kind::Seq(items) = &node.kind {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push((self.string(item, &format!("{path}[{i}]"))?, item.pos));
            }
            Ok(out)
        } else if node.is_null() {
            Ok(Vec::new())
        } else {
            Ok(vec![(self.string(node, path)?, node.pos)])
        }
    }

    /// `command` / `entrypoint`: a list, or a string split with shell-word rules.
    fn argv(&mut self, node: &Node, path: &str) -> R<Vec<String>> {
        match &node.kind {
            Kind::Seq(_) => Ok(self
                .string_or_list(node, path)?
                .into_iter()
                .map(|(s, _)| s)
                .collect()),
            _ if node.is_null() => Ok(Vec::new()),
            _ => {
                let s = self.string(node, path)?;
                shlex::split(&s).ok_or_else(|| {
                    self.err(
                        node.pos,
                        path,
                        K::Invalid(format!("cannot split into words (unbalanced quotes?): {s}")),
                    )
                })
            }
        }
    }

    /// A map, or a `KEY=VALUE` list (compose `environment` and `labels`). Values are interpolated;
    /// a key with no value is `None`.
    fn key_values(&mut self, node: &Node, path: &str) -> R<Vec<(String, Option<String>, Pos)>> {
        let mut out = Vec::new();
        match &node.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let s = self.string(item, &p)?;
                    let (k, v) = match s.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (s, None),
                    };
                    if k.is_empty() {
                        return Err(self.err(
                            item.pos,
                            p,
                            K::Invalid("empty name before \"=\"".into()),
                        ));
                    }
                    out.push((k, v, item.pos));
                }
            }
            _ => {
                for (k, v) in self.entries(node, path)? {
                    let key = k.key_text();
                    let p = format!("{path}.{key}");
                    let value = if v.is_null() {
                        None
                    } else if matches!(v.kind, Kind::Scalar { .. }) {
                        Some(self.string(v, &p)?)
                    } else {
                        return Err(self.wrong_type(v, &p, "a string"));
                    };
                    out.push((key, value, k.pos));
                }
            }
        }
        Ok(out)
    }

    /// Resolve the whole document.
    pub fn stack(mut self, root: Option<&Node>, project_name: Option<&str>) -> R<StackSpec> {
        let Some(root) = root else {
            return Err(self.err(
                Pos::default(),
                "",
                K::Invalid("empty stack file: no services".into()),
            ));
        };
        let mut name_node = None;
        let mut services_node = None;
        for (k, v) in self.entries(root, "")? {
            let key = k.key_text();
            match key.as_str() {
                "name" => name_node = Some(v),
                "services" => services_node = Some(v),
                _ if key.starts_with("x-") => {}
                _ if IGNORED_TOP_KEYS.contains(&key.as_str()) => self.ignored.push(IgnoredKey {
                    service: None,
                    key,
                    pos: k.pos,
                }),
                "include" => {
                    return Err(self.err(
                        k.pos,
                        key,
                        K::Unsupported(
                            "`include` is not supported; put all services in one stack file".into(),
                        ),
                    ));
                }
                _ => return Err(self.err(k.pos, key.clone(), K::UnknownKey(key))),
            }
        }
        let name = self.stack_name(name_node, project_name)?;
        let Some(services_node) = services_node else {
            return Err(self.err(
                root.pos,
                "services",
                K::Invalid("no `services` defined".into()),
            ));
        };
        let mut services = BTreeMap::new();
        for (k, v) in self.entries(services_node, "services")? {
            let sname = k.key_text();
            let path = format!("services.{sname}");
            if !valid_service_name(&sname) {
                return Err(self.err(k.pos, path, K::Invalid(format!(
                    "invalid service name \"{sname}\": use letters, digits, '_', '.' and '-', starting with a letter or digit"
                ))));
            }
            self.current = Some(sname.clone());
            let svc = self.service(&sname, k.pos, v)?;
            services.insert(sname, svc);
        }
        self.current = None;
        if services.is_empty() {
            return Err(self.err(
                services_node.pos,
                "services",
                K::Invalid("no services defined".into()),
            ));
        }
        // In file order, whatever order the resolver visited them in.
        self.ignored.sort_by_key(|k| (k.pos.line, k.pos.column));
        let spec = StackSpec {
            name,
            source: self.file.clone(),
            services,
            ignored: self.ignored,
            notices: self.notices,
        };
        super::validate::validate(&spec)?;
        Ok(spec)
    }

    fn stack_name(&mut self, node: Option<&Node>, project_name: Option<&str>) -> R<String> {
        if let Some(p) = project_name {
            return if valid_stack_name(p) {
                Ok(p.to_string())
            } else {
                Err(self.err(
                    Pos::default(),
                    "project name (-p)",
                    K::BadName(p.to_string()),
                ))
            };
        }
        if let Some(node) = node {
            let n = self.string(node, "name")?;
            return if valid_stack_name(&n) {
                Ok(n)
            } else {
                Err(self.err(node.pos, "name", K::BadName(n)))
            };
        }
        // Like compose: the directory name, normalised.
        let dir_name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let normalised: String = dir_name
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .skip_while(|c| !c.is_ascii_alphanumeric())
            .collect();
        if normalised.is_empty() {
            return Err(self.err(Pos::default(), "name", K::BadName(dir_name)));
        }
        Ok(normalised)
    }

    fn service(&mut self, name: &str, pos: Pos, node: &Node) -> R<ServiceSpec> {
        let base = format!("services.{name}");
        let mut entrypoint = Vec::new();
        let mut command = Vec::new();
        let mut env_files: Vec<(String, Pos, bool)> = Vec::new();
        let mut environment: Vec<(String, Option<String>, Pos)> = Vec::new();
        let mut working_dir = self.dir.clone();
        let mut deps_node = None;
        let mut hc_node = None;
        let mut restart = RestartPolicy::No;
        let mut profiles = Vec::new();
        let mut stop_grace_period = STOP_GRACE;
        let mut stop_signal = libc::SIGTERM;
        let mut labels = BTreeMap::new();
        let mut label_pos = BTreeMap::new();
        if !matches!(node.kind, Kind::Map(_)) {
            return Err(self.wrong_type(node, &base, "a mapping"));
        }
        for (k, v) in self.entries(node, &base)? {
            let key = k.key_text();
            let path = format!("{base}.{key}");
            match key.as_str() {
                "command" => command = self.argv(v, &path)?,
                "entrypoint" => entrypoint = self.argv(v, &path)?,
                "environment" => environment = self.key_values(v, &path)?,
                "env_file" => env_files = self.env_file_list(v, &path)?,
                "working_dir" => {
                    let wd = self.string(v, &path)?;
                    working_dir = self.dir.join(wd);
                }
                "depends_on" => deps_node = Some((v, path)),
                "healthcheck" => hc_node = Some((v, path)),
                "restart" => restart = self.restart(v, &path)?,
                "profiles" => profiles = self.profiles(v, &path)?,
                "stop_grace_period" => stop_grace_period = self.duration(v, &path)?,
                "stop_signal" => {
                    let s = self.string(v, &path)?;
                    stop_signal = parse_signal(&s).ok_or_else(|| {
                        self.err(v.pos, &path, K::Invalid(format!("unknown signal \"{s}\"")))
                    })?;
                }
                "labels" => {
                    for (lk, lv, lpos) in self.key_values(v, &path)? {
                        label_pos.insert(lk.clone(), lpos);
                        labels.insert(lk, lv.unwrap_or_default());
                    }
                }
                "extends" => {
                    return Err(self.err(
                        k.pos,
                        path,
                        K::Unsupported(
                            "`extends` is not supported; use YAML anchors and `<<` merge keys"
                                .into(),
                        ),
                    ));
                }
                _ if key.starts_with("x-") => {}
                _ if IGNORED_SERVICE_KEYS.contains(&key.as_str()) => {
                    self.ignored.push(IgnoredKey {
                        service: Some(name.to_string()),
                        key,
                        pos: k.pos,
                    })
                }
                _ => return Err(self.err(k.pos, path, K::UnknownKey(key))),
            }
        }
        let mut argv = entrypoint;
        argv.extend(command);
        if argv.is_empty() || argv[0].is_empty() {
            return Err(self.err(pos, &base, K::EmptyCommand));
        }
        let environment = self.environment(env_files, environment, &base)?;
        let depends_on = match deps_node {
            Some((n, path)) => self.depends_on(n, &path)?,
            None => Vec::new(),
        };
        let dive = self.dive_labels(&labels, &label_pos, pos, &base)?;
        let healthcheck = self.healthcheck(hc_node, dive.native_probe)?;
        Ok(ServiceSpec {
            name: name.to_string(),
            pos,
            argv,
            environment,
            working_dir,
            depends_on,
            healthcheck,
            restart,
            profiles,
            stop_grace_period,
            stop_signal,
            class: dive.class,
            class_explicit: dive.class_explicit,
            description: dive.description,
            start_timeout: dive.timeout,
            labels,
        })
    }

    /// `env_file`: a path, a list of paths, or a list of `{path, required}` maps.
    fn env_file_list(&mut self, node: &Node, path: &str) -> R<Vec<(String, Pos, bool)>> {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ if node.is_null() => Vec::new(),
            _ => vec![node],
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Kind::Map(entries) = &item.kind {
                let mut file = None;
                let mut required = true;
                for (k, v) in entries {
                    let key = k.key_text();
                    let kp = format!("{p}.{key}");
                    match key.as_str() {
                        "path" => file = Some(self.string(v, &kp)?),
                        "required" => required = self.boolean(v, &kp)?,
                        "format" => {
                            let f = self.string(v, &kp)?;
                            if f != "raw" && !f.is_empty() {
                                return Err(self.err(
                                    v.pos,
                                    kp,
                                    K::Invalid(format!("unsupported env_file format \"{f}\"")),
                                ));
                            }
                        }
                        _ => return Err(self.err(k.pos, kp, K::UnknownKey(key))),
                    }
                }
                let file = file
                    .ok_or_else(|| self.err(item.pos, &p, K::Invalid("missing `path`".into())))?;
                out.push((file, item.pos, required));
            } else {
                out.push((self.string(item, &p)?, item.pos, true));
            }
        }
        Ok(out)
    }

    /// `env_file` entries in order, then `environment` on top.
    fn environment(
        &mut self,
        env_files: Vec<(String, Pos, bool)>,
        environment: Vec<(String, Option<String>, Pos)>,
        base: &str,
    ) -> R<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (i, (file, pos, required)) in env_files.into_iter().enumerate() {
            let p = format!("{base}.env_file[{i}]");
            let full = self.dir.join(&file);
            let text = match std::fs::read_to_string(&full) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => return Err(self.err(pos, p, K::Io(format!("{}: {e}", full.display())))),
            };
            let vars = parse_env_file(&text, self.lookup).map_err(|e| {
                self.err(
                    pos,
                    &p,
                    K::Invalid(format!("{}:{}: {}", full.display(), e.line, e.message)),
                )
            })?;
            out.extend(vars);
        }
        for (k, v, _) in environment {
            let value = match v {
                Some(v) => Some(v),
                // A bare `KEY` takes its value from the environment compose was run in.
                None => (self.lookup)(&k),
            };
            match value {
                Some(v) => {
                    out.insert(k, v);
                }
                None => {
                    out.remove(&k);
                }
            }
        }
        Ok(out)
    }

    fn depends_on(&mut self, node: &Node, path: &str) -> R<Vec<Dependency>> {
        let mut deps: Vec<Dependency> = Vec::new();
        match &node.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let s = self.string(item, &format!("{path}[{i}]"))?;
                    deps.push(Dependency {
                        service: s,
                        condition: DependencyCondition::Started,
                        required: true,
                        pos: item.pos,
                    });
                }
            }
            _ => {
                for (k, v) in self.entries(node, path)? {
                    let service = k.key_text();
                    let p = format!("{path}.{service}");
                    let mut condition = DependencyCondition::Started;
                    let mut required = true;
                    for (ck, cv) in self.entries(v, &p)? {
                        let key = ck.key_text();
                        let cp = format!("{p}.{key}");
                        match key.as_str() {
                            "condition" => {
                                let c = self.string(cv, &cp)?;
                                condition = match c.as_str() {
                                    "service_started" => DependencyCondition::Started,
                                    "service_healthy" => DependencyCondition::Healthy,
                                    "service_completed_successfully" => {
                                        DependencyCondition::CompletedSuccessfully
                                    }
                                    _ => {
                                        return Err(self.err(cv.pos, cp, K::Invalid(format!(
                                            "unknown condition \"{c}\": expected service_started, service_healthy or service_completed_successfully"
                                        ))));
                                    }
                                };
                            }
                            "required" => required = self.boolean(cv, &cp)?,
                            // Compose restarts dependents when a dependency is restarted by an
                            // explicit operation; accepted, not acted on.
                            "restart" => {
                                self.boolean(cv, &cp)?;
                            }
                            _ => return Err(self.err(ck.pos, cp, K::UnknownKey(key))),
                        }
                    }
                    deps.push(Dependency {
                        service,
                        condition,
                        required,
                        pos: k.pos,
                    });
                }
            }
        }
        for (i, d) in deps.iter().enumerate() {
            if deps[..i].iter().any(|e| e.service == d.service) {
                return Err(self.err(
                    d.pos,
                    format!("{path}.{}", d.service),
                    K::Invalid(format!("\"{}\" is listed twice", d.service)),
                ));
            }
        }
        deps.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(deps)
    }

    fn restart(&mut self, node: &Node, path: &str) -> R<RestartPolicy> {
        let s = self.string(node, path)?;
        let bad = || self.err(node.pos, path, K::InvalidRestart(s.clone()));
        Ok(match s.as_str() {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(None),
            _ => match s.strip_prefix("on-failure:") {
                Some(n) => RestartPolicy::OnFailure(Some(n.parse().map_err(|_| bad())?)),
                None => return Err(bad()),
            },
        })
    }

    fn profiles(&mut self, node: &Node, path: &str) -> R<Vec<String>> {
        let mut out = Vec::new();
        for (i, item) in self.items(node, path)?.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let s = self.string(item, &p)?;
            let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(self.err(
                    item.pos,
                    p,
                    K::Invalid(format!("invalid profile name \"{s}\"")),
                ));
            }
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn dive_labels(
        &mut self,
        labels: &BTreeMap<String, String>,
        label_pos: &BTreeMap<String, Pos>,
        service_pos: Pos,
        base: &str,
    ) -> R<DiveLabels> {
        let at = |k: &str| label_pos.get(k).copied().unwrap_or(service_pos);
        let path = |k: &str| format!("{base}.labels.{k}");
        for k in labels.keys() {
            if k.starts_with("dive.") && !KNOWN_DIVE_LABELS.contains(&k.as_str()) {
                return Err(self.err(
                    at(k),
                    path(k),
                    K::Invalid(format!(
                        "unknown DIVE label \"{k}\" (known: {})",
                        KNOWN_DIVE_LABELS.join(", ")
                    )),
                ));
            }
        }
        let (class, class_explicit) = match labels.get(LABEL_CLASS) {
            Some(c) => (
                match c.as_str() {
                    "core" => ServiceClass::Core,
                    "stretch" => ServiceClass::Stretch,
                    "optional" => ServiceClass::Optional,
                    "init" => ServiceClass::Init,
                    _ => {
                        return Err(self.err(
                            at(LABEL_CLASS),
                            path(LABEL_CLASS),
                            K::InvalidClass(c.clone()),
                        ));
                    }
                },
                true,
            ),
            None => {
                self.notice(
                    service_pos,
                    format!("{base}: no {LABEL_CLASS} label; assuming optional"),
                );
                (ServiceClass::Optional, false)
            }
        };
        let timeout = match labels.get(LABEL_TIMEOUT) {
            Some(t) => Some(parse_duration(t).map_err(|m| {
                self.err(
                    at(LABEL_TIMEOUT),
                    path(LABEL_TIMEOUT),
                    K::InvalidDuration(t.clone(), m),
                )
            })?),
            None => None,
        };
        if let Some(r) = labels.get(LABEL_RETRIES)
            && r.parse::<u32>().is_err()
        {
            return Err(self.err(
                at(LABEL_RETRIES),
                path(LABEL_RETRIES),
                K::Invalid(format!("{r:?} is not a whole number of retries")),
            ));
        }
        if let Some(b) = labels.get(LABEL_RETRY_BACKOFF) {
            parse_duration(b).map_err(|m| {
                self.err(
                    at(LABEL_RETRY_BACKOFF),
                    path(LABEL_RETRY_BACKOFF),
                    K::InvalidDuration(b.clone(), m),
                )
            })?;
        }
        let http = labels.get(LABEL_HEALTH_HTTP);
        let tcp = labels.get(LABEL_HEALTH_TCP);
        let native_probe = match (http, tcp) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    at(LABEL_HEALTH_TCP),
                    path(LABEL_HEALTH_TCP),
                    K::Invalid(format!(
                        "both {LABEL_HEALTH_HTTP} and {LABEL_HEALTH_TCP} are set; choose one"
                    )),
                ));
            }
            (Some(url), None) => {
                check_http_url(url).map_err(|m| {
                    self.err(
                        at(LABEL_HEALTH_HTTP),
                        path(LABEL_HEALTH_HTTP),
                        K::Invalid(m),
                    )
                })?;
                let ca_file = match labels.get(LABEL_HEALTH_CA) {
                    Some(ca) if ca.trim().is_empty() => {
                        return Err(self.err(
                            at(LABEL_HEALTH_CA),
                            path(LABEL_HEALTH_CA),
                            K::Invalid("empty CA file path".into()),
                        ));
                    }
                    Some(ca) => Some(self.dir.join(ca)),
                    None => None,
                };
                Some(Probe::Http {
                    url: url.clone(),
                    ca_file,
                })
            }
            (None, _) if labels.contains_key(LABEL_HEALTH_CA) => {
                return Err(self.err(
                    at(LABEL_HEALTH_CA),
                    path(LABEL_HEALTH_CA),
                    K::Invalid(format!(
                        "{LABEL_HEALTH_CA} only applies to a {LABEL_HEALTH_HTTP} probe"
                    )),
                ));
            }
            (None, Some(addr)) => {
                check_host_port(addr).map_err(|m| {
                    self.err(at(LABEL_HEALTH_TCP), path(LABEL_HEALTH_TCP), K::Invalid(m))
                })?;
                Some(Probe::Tcp(addr.clone()))
            }
            (None, None) => None,
        };
        Ok(DiveLabels {
            class,
            class_explicit,
            description: labels.get(LABEL_DESCRIPTION).cloned(),
            timeout,
            native_probe,
        })
    }

    /// `healthcheck` plus an optional native probe label (which wins over `test`, and keeps the
    /// timing fields).
    fn healthcheck(
        &mut self,
        hc: Option<(&Node, String)>,
        native: Option<Probe>,
    ) -> R<Option<HealthCheck>> {
        let mut check = HealthCheck {
            probe: Probe::Shell(String::new()),
            interval: HC_INTERVAL,
            timeout: HC_TIMEOUT,
            retries: HC_RETRIES,
            start_period: Duration::ZERO,
            start_interval: HC_START_INTERVAL,
        };
        let mut test: Option<Probe> = None;
        let mut disabled = false;
        if let Some((node, path)) = &hc {
            for (k, v) in self.entries(node, path)? {
                let key = k.key_text();
                let p = format!("{path}.{key}");
                match key.as_str() {
                    "test" => match self.test(v, &p)? {
                        Some(t) => test = Some(t),
                        None => disabled = true,
                    },
                    "interval" => check.interval = self.duration(v, &p)?,
                    "timeout" => check.timeout = self.duration(v, &p)?,
                    "start_period" => check.start_period = self.duration(v, &p)?,
                    "start_interval" => check.start_interval = self.duration(v, &p)?,
                    "retries" => {
                        let s = self.string(v, &p)?;
                        check.retries = s.parse().map_err(|_| {
                            self.err(
                                v.pos,
                                &p,
                                K::Invalid(format!(
                                    "expected a non-negative integer, found \"{s}\""
                                )),
                            )
                        })?;
                    }
                    "disable" => disabled |= self.boolean(v, &p)?,
                    _ => return Err(self.err(k.pos, p, K::UnknownKey(key))),
                }
            }
            for (value, field) in [
                (check.interval, "interval"),
                (check.timeout, "timeout"),
                (check.start_interval, "start_interval"),
            ] {
                if value.is_zero() {
                    return Err(self.err(
                        node.pos,
                        format!("{path}.{field}"),
                        K::Invalid(format!("{field} must be greater than 0")),
                    ));
                }
            }
        }
        let probe = match (native, test) {
            (Some(n), _) => n,
            (None, Some(t)) if !disabled => t,
            (None, None) if !disabled => {
                // Compose would inherit the image's test; with no image there is none.
                if let Some((node, path)) = hc {
                    self.notice(
                        node.pos,
                        format!("{path}: no `test` and no {LABEL_HEALTH_HTTP}/{LABEL_HEALTH_TCP} label; the service has no health check"),
                    );
                }
                return Ok(None);
            }
            _ => return Ok(None),
        };
        check.probe = probe;
        Ok(Some(check))
    }

    /// `test`: `["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]` (→ `None`) or a shell string.
    fn test(&mut self, node: &Node, path: &str) -> R<Option<Probe>> {
        let Kind::Seq(_) = &node.kind else {
            let s = self.string(node, path)?;
            if s.trim().is_empty() {
                return Err(self.err(node.pos, path, K::Invalid("empty healthcheck test".into())));
            }
            return Ok(Some(Probe::Shell(s)));
        };
        let words: Vec<String> = self
            .string_or_list(node, path)?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let bad = |m: &str| Err(self.err(node.pos, path, K::Invalid(m.to_string())));
        match words.split_first() {
            Some((first, rest)) => match first.as_str() {
                "NONE" => Ok(None),
                "CMD" if !rest.is_empty() && !rest[0].is_empty() => {
                    Ok(Some(Probe::Cmd(rest.to_vec())))
                }
                "CMD" => bad("[\"CMD\", ...] needs a program to run"),
                "CMD-SHELL" if !rest.is_empty() && !rest.join(" ").trim().is_empty() => {
                    Ok(Some(Probe::Shell(rest.join(" "))))
                }
                "CMD-SHELL" => bad("[\"CMD-SHELL\", ...] needs a command"),
                other => bad(&format!(
                    "a test list must start with \"CMD\", \"CMD-SHELL\" or \"NONE\", not \"{other}\""
                )),
            },
            None => bad("empty healthcheck test"),
        }
    }
}

struct DiveLabels {
    class: ServiceClass,
    class_explicit: bool,
    description: Option<String>,
    timeout: Option<Duration>,
    native_probe: Option<Probe>,
}

fn valid_service_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Compose project names: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub fn valid_stack_name(s: &str) -> bool {
    // 63 at most: the name becomes a directory in the supervisor's socket path, which Unix
    // limits to 107 bytes.
    s.len() <= 63
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("\"{url}\" is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.ends_with(':') {
        return Err(format!("\"{url}\" has no host"));
    }
    Ok(())
}

fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("\"{addr}\" is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("\"{addr}\" has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("\"{addr}\": invalid port \"{port}\"")),
    }
}

/// `SIGTERM`, `TERM` or `15`.
fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "ALRM" => libc::SIGALRM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "WINCH" => libc::SIGWINCH,
        "PWR" => libc::SIGPWR,
        _ => return None,
    })
}

/// Resolve relative to `dir` for callers that have a path string (used for `.env`).
pub fn stack_dir(source: &Path) -> PathBuf {
    let abs = std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf());
    abs.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("int"), Some(2));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("0"), None);
    }

    #[test]
    fn names() {
        assert!(valid_stack_name("dive-hub_1"));
        assert!(!valid_stack_name("Hub"));
        assert!(!valid_stack_name("-x"));
        assert!(!valid_stack_name(""));
        assert!(valid_service_name("api.v2"));
        assert!(!valid_service_name("_x"));
    }

    #[test]
    fn probes() {
        assert!(check_http_url("http://127.0.0.1:8080/health").is_ok());
        assert!(check_http_url("https://x").is_ok());
        assert!(check_http_url("ftp://x").is_err());
        assert!(check_http_url("http:///x").is_err());
        assert!(check_host_port("localhost:5432").is_ok());
        assert!(check_host_port("[::1]:80").is_ok());
        assert!(check_host_port("localhost").is_err());
        assert!(check_host_port("localhost:0").is_err());
        assert!(check_host_port(":80").is_err());
    }
}
