//! The simulated agents: users with multi-step plans whose prompts repeat and overlap.

use std::str::FromStr;
use std::time::Duration;

/// How the offered load changes over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// The same rate throughout.
    Constant,
    /// From a quarter of the rate up to twice it.
    Ramp,
    /// Steady, with four times the rate between 30 % and 50 % of the run.
    Spike,
    /// Three times the rate throughout.
    Stress,
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "constant" => Ok(Pattern::Constant),
            "ramp" => Ok(Pattern::Ramp),
            "spike" => Ok(Pattern::Spike),
            "stress" => Ok(Pattern::Stress),
            other => Err(format!(
                "--pattern must be constant, ramp, spike or stress, not `{other}`"
            )),
        }
    }
}

impl Pattern {
    /// Load multiplier at `progress` (0 at the start, 1 at the end).
    pub(crate) fn intensity(self, progress: f64) -> f64 {
        match self {
            Pattern::Constant => 1.0,
            Pattern::Ramp => 0.25 + 1.75 * progress,
            Pattern::Spike if (0.3..0.5).contains(&progress) => 4.0,
            Pattern::Spike => 1.0,
            Pattern::Stress => 3.0,
        }
    }
}

/// One request an agent sends.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) user: String,
    pub(crate) prompt: String,
    pub(crate) prompt_tokens: u64,
    pub(crate) max_tokens: u64,
}

impl Ask {
    /// Tokens charged against the user's budget: what the call may consume at most.
    pub(crate) fn budget_cost(&self) -> u64 {
        self.prompt_tokens + self.max_tokens
    }
}

/// Prompt popularity: a few hundred shared questions with Zipf-like weights (agents on the
/// same task ask the same things), plus questions unique to one agent's plan.
pub(crate) struct PromptMix {
    cumulative: Vec<f64>,
}

const SHARED_PROMPTS: usize = 400;
const SHARED_SHARE: f64 = 0.75;

impl PromptMix {
    pub(crate) fn new() -> Self {
        let mut total = 0.0;
        let cumulative = (1..=SHARED_PROMPTS)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(1.05);
                total
            })
            .collect();
        Self { cumulative }
    }

    pub(crate) fn next(&self, rng: &mut fastrand::Rng, user: &str, agent: usize, step: u64) -> Ask {
        let prompt = if rng.f64() < SHARED_SHARE {
            let total = self.cumulative.last().copied().unwrap_or(1.0);
            let pick = rng.f64() * total;
            let rank = self.cumulative.partition_point(|&c| c < pick);
            format!("shared question #{rank}: summarise the findings so far")
        } else {
            format!("agent {agent} step {step}: plan the next tool call")
        };
        Ask {
            user: user.to_string(),
            prompt_tokens: 40 + (prompt.len() as u64) * 2,
            max_tokens: 200 + rng.u64(0..400),
            prompt,
        }
    }
}

/// Time an agent thinks between calls at unit intensity.
pub(crate) const THINK_TIME: Duration = Duration::from_millis(150);
