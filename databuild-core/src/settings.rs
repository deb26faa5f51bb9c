//! Settings of an orchestrator and its executors, from code, a TOML file and
//! `DATABUILD_*` environment variables (seed 003: an executor receives its
//! configuration through the environment), with the defaults in one place:
//!
//! | setting | TOML key | variable | default | used by |
//! |---|---|---|---|---|
//! | parallelism | `parallelism` | `DATABUILD_PARALLELISM` | the number of CPUs | the orchestrator: runs at once in the default pool |
//! | liveness timeout | `liveness-timeout` | `DATABUILD_LIVENESS_TIMEOUT` | 60 s | the orchestrator: a run with no sign of life this long is Lost |
//! | heartbeat interval | `heartbeat-interval` | `DATABUILD_HEARTBEAT_INTERVAL` | 1 s | executors: how often a run's process is sampled |
//! | BEL heartbeat interval | `bel-heartbeat-interval` | `DATABUILD_BEL_HEARTBEAT_INTERVAL` | 30 s | the orchestrator: at most one `JobRunHeartbeat` per run per interval in the log |
//! | keep-alive interval | `keepalive-interval` | `DATABUILD_KEEPALIVE_INTERVAL` | 5 s | remote executors: how often each engine is pinged |
//! | keep-alive timeout | `keepalive-timeout` | `DATABUILD_KEEPALIVE_TIMEOUT` | 60 s | remote executors: how long an engine may not answer before its runs are failed as lost |
//! | request timeout | `request-timeout` | `DATABUILD_REQUEST_TIMEOUT` | 120 s | remote executors: one call to an engine |
//! | state directory | `state-dir` | `DATABUILD_STATE_DIR` | `.databuild` | run logs (`<state-dir>/logs/<date>/<job_run_id>.jsonl`), run directories, scratch |
//! | labels | `[labels]` | `DATABUILD_LABELS` (`gpu=true,zone=a`) | none | executors: labels jobs' requirements are matched against |
//!
//! Durations are written `250ms`, `90s`, `5m`, `2h` (or bare seconds).
//! Later sources win: defaults, then the file, then the environment. Every
//! value is checked; an error names the setting and where it came from (the
//! file and line, or the variable). Unknown keys in the file are errors;
//! unknown `DATABUILD_*` variables are left alone (jobs get many).
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use databuild_core::settings::Settings;
//!
//! let file = Settings::from_toml("liveness-timeout = \"2m\"\n[labels]\nzone = \"a\"\n", "site.toml")?;
//! let env = HashMap::from([("DATABUILD_PARALLELISM".to_owned(), "8".to_owned())]);
//! let settings = file.with_env(&env)?;
//! assert_eq!(settings.liveness_timeout, Duration::from_secs(120));
//! assert_eq!(settings.parallelism, Some(8));
//! assert_eq!(settings.labels["zone"], "a");
//!
//! let bad = HashMap::from([("DATABUILD_LIVENESS_TIMEOUT".to_owned(), "soon".to_owned())]);
//! let err = Settings::default().with_env(&bad).unwrap_err();
//! assert!(err.to_string().contains("DATABUILD_LIVENESS_TIMEOUT"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::orchestrator::OrchestratorSettings;

/// Settings of an orchestrator and its executors. See the module docs for
/// each one's key, variable and default.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// Runs at once in the default pool; `None` is the number of CPUs.
    pub parallelism: Option<usize>,
    /// A run with no sign of life this long is Lost.
    pub liveness_timeout: Duration,
    /// How often executors sample a run's process.
    pub heartbeat_interval: Duration,
    /// At most one `JobRunHeartbeat` per run per interval in the log.
    pub bel_heartbeat_interval: Duration,
    /// How often remote executors ping each engine.
    pub keepalive_interval: Duration,
    /// How long an engine may not answer before its runs are lost.
    pub keepalive_timeout: Duration,
    /// The limit of one call to an engine.
    pub request_timeout: Duration,
    /// Where run logs, run directories and scratch go.
    pub state_dir: PathBuf,
    /// Executor labels.
    pub labels: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        let orchestrator = OrchestratorSettings::default();
        Self {
            parallelism: None,
            liveness_timeout: orchestrator.liveness_timeout,
            heartbeat_interval: Duration::from_secs(1),
            bel_heartbeat_interval: orchestrator.bel_heartbeat_interval,
            keepalive_interval: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            state_dir: PathBuf::from(".databuild"),
            labels: BTreeMap::new(),
        }
    }
}

/// Why settings were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A value is not valid.
    #[error("setting {setting} ({origin}): {reason}")]
    Invalid {
        /// The setting (its TOML key).
        setting: String,
        /// Where the value came from: `file:line`, or the variable.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The settings file cannot be read.
    #[error("{}: cannot read the settings file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSettings {
    parallelism: Option<toml::Spanned<i64>>,
    liveness_timeout: Option<toml::Spanned<String>>,
    heartbeat_interval: Option<toml::Spanned<String>>,
    bel_heartbeat_interval: Option<toml::Spanned<String>>,
    keepalive_interval: Option<toml::Spanned<String>>,
    keepalive_timeout: Option<toml::Spanned<String>>,
    request_timeout: Option<toml::Spanned<String>>,
    state_dir: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The durations, by TOML key and variable.
const DURATIONS: [(&str, &str); 6] = [
    ("liveness-timeout", "DATABUILD_LIVENESS_TIMEOUT"),
    ("heartbeat-interval", "DATABUILD_HEARTBEAT_INTERVAL"),
    ("bel-heartbeat-interval", "DATABUILD_BEL_HEARTBEAT_INTERVAL"),
    ("keepalive-interval", "DATABUILD_KEEPALIVE_INTERVAL"),
    ("keepalive-timeout", "DATABUILD_KEEPALIVE_TIMEOUT"),
    ("request-timeout", "DATABUILD_REQUEST_TIMEOUT"),
];

impl Settings {
    /// The defaults with the settings of a TOML text (from `origin`, for
    /// errors) over them.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SettingsError> {
        Self::default().with_toml(text, origin)
    }

    /// The defaults with the settings of the TOML file at `path` over them.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SettingsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The defaults, then the file (when given), then the `DATABUILD_*`
    /// variables of `env`.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let settings = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        settings.with_env(env)
    }

    /// These settings with a TOML text's over them.
    pub fn with_toml(mut self, text: &str, origin: &str) -> Result<Self, SettingsError> {
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: RawSettings = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_owned();
            let setting = message
                .split('`')
                .nth(1)
                .filter(|_| message.starts_with("unknown field"))
                .unwrap_or("(file)")
                .to_owned();
            SettingsError::Invalid {
                setting,
                origin: format!("{origin}:{}", line(e.span().map_or(0, |s| s.start))),
                reason: message,
            }
        })?;
        if let Some(p) = &raw.parallelism {
            self.parallelism = Some(positive(*p.get_ref(), "parallelism", || {
                format!("{origin}:{}", line(p.span().start))
            })?);
        }
        let given = [
            &raw.liveness_timeout,
            &raw.heartbeat_interval,
            &raw.bel_heartbeat_interval,
            &raw.keepalive_interval,
            &raw.keepalive_timeout,
            &raw.request_timeout,
        ];
        for ((key, _), value) in DURATIONS.iter().zip(given) {
            if let Some(v) = value {
                let d = duration(v.get_ref(), key, || {
                    format!("{origin}:{}", line(v.span().start))
                })?;
                *self.duration_mut(key) = d;
            }
        }
        if let Some(dir) = raw.state_dir {
            self.state_dir = PathBuf::from(dir);
        }
        self.labels.extend(raw.labels);
        self.check(origin)?;
        Ok(self)
    }

    /// These settings with the `DATABUILD_*` variables of `env` over them
    /// (a map, so tests never touch the process environment; pass
    /// `std::env::vars().collect()`).
    pub fn with_env(mut self, env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        if let Some(v) = env.get("DATABUILD_PARALLELISM") {
            let n = v
                .trim()
                .parse::<i64>()
                .map_err(|_| SettingsError::Invalid {
                    setting: "parallelism".into(),
                    origin: "DATABUILD_PARALLELISM".into(),
                    reason: format!("{v:?} is not a number"),
                })?;
            self.parallelism = Some(positive(n, "parallelism", || {
                "DATABUILD_PARALLELISM".into()
            })?);
        }
        for (key, var) in DURATIONS {
            if let Some(v) = env.get(var) {
                let d = duration(v, key, || var.to_owned())?;
                *self.duration_mut(key) = d;
            }
        }
        if let Some(v) = env.get("DATABUILD_STATE_DIR").filter(|v| !v.is_empty()) {
            self.state_dir = PathBuf::from(v);
        }
        if let Some(v) = env.get("DATABUILD_LABELS") {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, val) = pair
                    .split_once('=')
                    .filter(|(k, _)| !k.trim().is_empty())
                    .ok_or_else(|| SettingsError::Invalid {
                        setting: "labels".into(),
                        origin: "DATABUILD_LABELS".into(),
                        reason: format!("{pair:?} is not key=value"),
                    })?;
                self.labels
                    .insert(k.trim().to_owned(), val.trim().to_owned());
            }
        }
        self.check("the environment")?;
        Ok(self)
    }

    /// The orchestrator's part.
    pub fn orchestrator(&self) -> OrchestratorSettings {
        OrchestratorSettings::default()
            .liveness_timeout(self.liveness_timeout)
            .bel_heartbeat_interval(self.bel_heartbeat_interval)
    }

    fn duration_mut(&mut self, key: &str) -> &mut Duration {
        match key {
            "liveness-timeout" => &mut self.liveness_timeout,
            "heartbeat-interval" => &mut self.heartbeat_interval,
            "bel-heartbeat-interval" => &mut self.bel_heartbeat_interval,
            "keepalive-interval" => &mut self.keepalive_interval,
            "keepalive-timeout" => &mut self.keepalive_timeout,
            _ => &mut self.request_timeout,
        }
    }

    /// Checks what depends on two settings.
    fn check(&self, origin: &str) -> Result<(), SettingsError> {
        if self.keepalive_timeout <= self.keepalive_interval {
            return Err(SettingsError::Invalid {
                setting: "keepalive-timeout".into(),
                origin: origin.to_owned(),
                reason: format!(
                    "{:?} must be longer than keepalive-interval ({:?})",
                    self.keepalive_timeout, self.keepalive_interval
                ),
            });
        }
        Ok(())
    }
}

fn positive(
    n: i64,
    setting: &str,
    origin: impl FnOnce() -> String,
) -> Result<usize, SettingsError> {
    usize::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| SettingsError::Invalid {
            setting: setting.to_owned(),
            origin: origin(),
            reason: format!("a positive number, not {n}"),
        })
}

fn duration(
    text: &str,
    setting: &str,
    origin: impl FnOnce() -> String,
) -> Result<Duration, SettingsError> {
    parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| SettingsError::Invalid {
            setting: setting.to_owned(),
            origin: origin(),
            reason: format!(
                "{text:?} is not a duration (a positive number with ms, s, m or h, like \"90s\")"
            ),
        })
}

/// `250ms`, `90s`, `5m`, `2h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn later_sources_win() {
        let file = "parallelism = 3\nkeepalive-interval = \"2s\"\nstate-dir = \"/srv/db\"\n[labels]\ngpu = \"true\"\n";
        let s = Settings::from_toml(file, "s.toml").unwrap();
        assert_eq!(s.parallelism, Some(3));
        assert_eq!(s.keepalive_interval, Duration::from_secs(2));
        assert_eq!(s.liveness_timeout, Duration::from_secs(60), "a default");
        let s = s
            .with_env(&env(&[
                ("DATABUILD_PARALLELISM", "5"),
                ("DATABUILD_LABELS", "zone=a, gpu=false"),
                ("DATABUILD_REQUEST_TIMEOUT", "250ms"),
                ("DATABUILD_JOB_RUN_ID", "not a setting"),
            ]))
            .unwrap();
        assert_eq!(s.parallelism, Some(5));
        assert_eq!(s.labels["gpu"], "false");
        assert_eq!(s.labels["zone"], "a");
        assert_eq!(s.request_timeout, Duration::from_millis(250));
        assert_eq!(s.state_dir, PathBuf::from("/srv/db"));
        assert_eq!(s.orchestrator().liveness_timeout, Duration::from_secs(60));
    }

    #[test]
    fn errors_name_the_setting_and_where_it_came_from() {
        let err = |r: Result<Settings, SettingsError>| r.unwrap_err().to_string();
        let e = err(Settings::from_toml(
            "\n\nliveness-timeout = \"soon\"\n",
            "s.toml",
        ));
        assert!(e.contains("setting liveness-timeout (s.toml:3)"), "{e}");
        let e = err(Settings::from_toml("livenes-timeout = \"5s\"\n", "s.toml"));
        assert!(e.contains("setting livenes-timeout (s.toml:1)"), "{e}");
        let e = err(Settings::from_toml("parallelism = 0\n", "s.toml"));
        assert!(
            e.contains("setting parallelism (s.toml:1): a positive number"),
            "{e}"
        );
        let e = err(Settings::default().with_env(&env(&[("DATABUILD_PARALLELISM", "many")])));
        assert!(
            e.contains("setting parallelism (DATABUILD_PARALLELISM)"),
            "{e}"
        );
        let e = err(Settings::default().with_env(&env(&[("DATABUILD_HEARTBEAT_INTERVAL", "0s")])));
        assert!(
            e.contains("heartbeat-interval (DATABUILD_HEARTBEAT_INTERVAL)"),
            "{e}"
        );
        let e = err(Settings::default().with_env(&env(&[("DATABUILD_LABELS", "gpu")])));
        assert!(e.contains("labels (DATABUILD_LABELS)"), "{e}");
        let e = err(Settings::default().with_env(&env(&[("DATABUILD_KEEPALIVE_TIMEOUT", "1s")])));
        assert!(e.contains("keepalive-timeout"), "{e}");
        let e = err(Settings::from_file("/nonexistent/settings.toml"));
        assert!(e.contains("/nonexistent/settings.toml"), "{e}");
    }
}
