//! Command-line flags, parsed by hand so the example needs nothing beyond Backstop.

use std::path::PathBuf;
use std::time::Duration;

use crate::pattern::Pattern;

pub(crate) const USAGE: &str = "\
agent_gateway: an LLM gateway built from Backstop, under a simulated fleet of agents

USAGE:
    cargo run --release -p agent-gateway -- [FLAGS]

FLAGS:
    --agents N          concurrent agents (default 24)
    --duration D        how long to run, e.g. 12s, 1m (default 12s)
    --pattern P         constant | ramp | spike | stress (default constant): backstop-load's
                        open-loop arrivals, 5 asks/s per agent at the base rate
    --config PATH       the gateway's TOML file: [slo] and Backstop's [backstop.*] sections
                        (see examples/backstop.toml)
    --check-slo         exit with status 1 when an SLO fails
    -h, --help          this text

ENVIRONMENT:
    REDIS_CLUSTER_NODES host:port,... seeds of a Redis Cluster for the cache's shared tier
    REDIS_URL           one Redis server instead (both unused when the file has [backstop.redis])
    AGENT_GATEWAY__...  overrides a key of the file, e.g. AGENT_GATEWAY__SLO__P95_LATENCY=2s";

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) agents: usize,
    pub(crate) duration: Duration,
    pub(crate) pattern: Pattern,
    pub(crate) config: Option<PathBuf>,
    pub(crate) check_slo: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            agents: 24,
            duration: Duration::from_secs(12),
            pattern: Pattern::Constant,
            config: None,
            check_slo: false,
        }
    }
}

/// `Ok(None)` means `--help` was asked for.
pub(crate) fn parse(mut words: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args::default();
    while let Some(flag) = words.next() {
        let mut value = |name: &str| words.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--agents" => {
                let text = value("--agents")?;
                args.agents = match text.parse() {
                    Ok(n) if (1..=10_000).contains(&n) => n,
                    _ => return Err(format!("--agents must be 1..=10000, not `{text}`")),
                };
            }
            "--duration" => {
                let text = value("--duration")?;
                args.duration = backstop::core::duration::parse(&text)
                    .map_err(|error| format!("--duration `{text}`: {error}"))?;
                if args.duration < Duration::from_secs(1) {
                    return Err("--duration must be at least 1s".to_string());
                }
            }
            "--pattern" => args.pattern = value("--pattern")?.parse()?,
            "--config" => args.config = Some(PathBuf::from(value("--config")?)),
            "--check-slo" => args.check_slo = true,
            other => return Err(format!("unknown flag `{other}`; try --help")),
        }
    }
    Ok(Some(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Option<Args>, String> {
        parse(words.iter().map(|w| w.to_string()))
    }

    #[test]
    fn flags_parse_and_defaults_hold() {
        let args = parse_words(&[]).unwrap().unwrap();
        assert_eq!((args.agents, args.duration), (24, Duration::from_secs(12)));
        assert!(!args.check_slo && args.config.is_none());

        let args = parse_words(&[
            "--agents",
            "8",
            "--duration",
            "1m30s",
            "--pattern",
            "spike",
            "--config",
            "x.toml",
            "--check-slo",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(args.agents, 8);
        assert_eq!(args.duration, Duration::from_secs(90));
        assert_eq!(args.pattern, Pattern::Spike);
        assert_eq!(args.config, Some(PathBuf::from("x.toml")));
        assert!(args.check_slo);
        assert!(parse_words(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        for (words, expected) in [
            (&["--agents", "0"][..], "--agents must be 1..=10000"),
            (&["--agents", "many"], "`many`"),
            (&["--agents"], "--agents needs a value"),
            (&["--duration", "soon"], "--duration `soon`"),
            (&["--duration", "100ms"], "at least 1s"),
            (&["--pattern", "wave"], "`wave`"),
            (&["--verbose"], "unknown flag `--verbose`"),
        ] {
            let error = parse_words(words).unwrap_err();
            assert!(error.contains(expected), "{words:?}: {error}");
        }
    }
}
