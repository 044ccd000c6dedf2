//! The simulated agents: users whose agents work through multi-step plans, with prompts
//! that repeat and overlap across the fleet, and that retry failed calls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::args::Args;
use crate::outcome::{Outcome, Tally, classify};
use crate::stack::Gateway;

/// Which class of the adaptive limit an agent's calls belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// An agent a person is watching: its answers stream token by token, and it keeps a
    /// guaranteed share of the provider when the limit shrinks.
    Critical,
    /// An agent working in the background: its calls are batched and shed first.
    Background,
}

impl Priority {
    pub(crate) const ALL: [Priority; 2] = [Priority::Critical, Priority::Background];

    /// One agent in four is critical.
    pub(crate) fn of_agent(agent: usize) -> Self {
        if agent.is_multiple_of(4) {
            Priority::Critical
        } else {
            Priority::Background
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Background => "background",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One request an agent sends.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) user: String,
    pub(crate) prompt: String,
    pub(crate) prompt_tokens: u64,
    pub(crate) max_tokens: u64,
    pub(crate) priority: Priority,
}

impl Ask {
    /// Tokens charged against the user's budget: what the call may consume at most.
    pub(crate) fn budget_cost(&self) -> u64 {
        self.prompt_tokens + self.max_tokens
    }

    /// Tokens the call would have cost had it gone to the provider (a completion uses
    /// three quarters of `max_tokens` on average).
    pub(crate) fn expected_tokens(&self) -> u64 {
        self.prompt_tokens + self.max_tokens * 3 / 4
    }
}

/// Tasks agents are given, with Zipf-like popularity: many agents work on the few popular
/// tasks at once, so their plans ask the same questions, often at the same time.
pub(crate) struct TaskMix {
    cumulative: Vec<f64>,
}

const TASKS: usize = 50;
const ZIPF_EXPONENT: f64 = 1.05;
/// The chance that a step also needs a question only this agent asks (about its own
/// tool output), which no cache can answer.
const PRIVATE_SHARE: f64 = 0.3;

impl TaskMix {
    pub(crate) fn new() -> Self {
        let mut total = 0.0;
        let cumulative = (1..=TASKS)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(ZIPF_EXPONENT);
                total
            })
            .collect();
        Self { cumulative }
    }

    /// A task rank, 0 the most popular.
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let pick = rng.f64() * total;
        self.cumulative
            .partition_point(|&c| c < pick)
            .min(TASKS - 1)
    }
}

/// One agent's current plan: a task and the steps it takes to finish it.
pub(crate) struct Plan {
    task: usize,
    steps: u64,
    done: u64,
}

impl Plan {
    pub(crate) fn new(mix: &TaskMix, rng: &mut fastrand::Rng) -> Self {
        Self {
            task: mix.pick(rng),
            steps: rng.u64(3..=6),
            done: 0,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.done >= self.steps
    }

    /// The asks of the next step: the step's shared question, sometimes followed by a
    /// private one.
    pub(crate) fn next_step(
        &mut self,
        rng: &mut fastrand::Rng,
        user: &str,
        agent: usize,
    ) -> Vec<Ask> {
        let priority = Priority::of_agent(agent);
        self.done += 1;
        let shared = format!(
            "task #{} step {}: what should be done next?",
            self.task, self.done
        );
        let mut asks = vec![ask(rng, user, shared, priority)];
        if rng.f64() < PRIVATE_SHARE {
            let private = format!(
                "agent {agent}, task #{} step {}: interpret this tool output ({})",
                self.task,
                self.done,
                rng.u64(..)
            );
            asks.push(ask(rng, user, private, priority));
        }
        asks
    }
}

fn ask(rng: &mut fastrand::Rng, user: &str, prompt: String, priority: Priority) -> Ask {
    Ask {
        user: user.to_string(),
        prompt_tokens: 40 + (prompt.len() as u64) * 2,
        max_tokens: 200 + rng.u64(0..400),
        prompt,
        priority,
    }
}

/// Time an agent thinks between calls at unit intensity.
pub(crate) const THINK_TIME: Duration = Duration::from_millis(150);
/// Retries after a failed call, with exponential backoff from this delay.
const RETRIES: u32 = 2;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Two agents per user.
pub(crate) fn users(agents: usize) -> usize {
    agents.div_ceil(2)
}

/// Spawns the agents: each belongs to a user, works through plan after plan, thinks
/// between calls (less as the pattern's intensity rises), backs off after a 429 and
/// retries a failed call. Critical agents read their answers as streams, background
/// agents as whole (batched) answers.
pub(crate) fn spawn(
    gateway: &Arc<Gateway>,
    tally: &Arc<Tally>,
    args: &Args,
    started: Instant,
) -> Vec<JoinHandle<()>> {
    let mix = Arc::new(TaskMix::new());
    (0..args.agents)
        .map(|agent| {
            let (gateway, tally, mix) = (gateway.clone(), tally.clone(), mix.clone());
            let (run, pattern) = (args.duration, args.pattern);
            let user = format!("user-{}", agent % users(args.agents));
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(agent as u64);
                let mut plan = Plan::new(&mix, &mut rng);
                // Agents come online over one think time, not all in the same instant.
                tokio::time::sleep(THINK_TIME.mul_f64(rng.f64())).await;
                while started.elapsed() < run {
                    if plan.is_finished() {
                        tally.plans.fetch_add(1, Ordering::Relaxed);
                        plan = Plan::new(&mix, &mut rng);
                    }
                    let mut limited = false;
                    for ask in plan.next_step(&mut rng, &user, agent) {
                        limited |= send_with_retries(&gateway, &tally, &ask, &mut rng).await
                            == Outcome::RateLimited;
                    }
                    let progress = started.elapsed().as_secs_f64() / run.as_secs_f64();
                    let think = THINK_TIME.div_f64(pattern.intensity(progress));
                    let pause = if limited { think * 2 } else { think };
                    tokio::time::sleep(pause.mul_f64(0.5 + rng.f64())).await;
                }
            })
        })
        .collect()
}

async fn send_with_retries(
    gateway: &Gateway,
    tally: &Tally,
    ask: &Ask,
    rng: &mut fastrand::Rng,
) -> Outcome {
    let mut outcome = send(gateway, tally, ask).await;
    let mut backoff = FIRST_BACKOFF;
    for _ in 0..RETRIES {
        if !outcome.is_retryable() {
            break;
        }
        tally.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff.mul_f64(0.5 + rng.f64())).await;
        backoff *= 2;
        outcome = send(gateway, tally, ask).await;
    }
    outcome
}

async fn send(gateway: &Gateway, tally: &Tally, ask: &Ask) -> Outcome {
    tally
        .tokens_without_backstop
        .fetch_add(ask.expected_tokens(), Ordering::Relaxed);
    tally.in_flight.fetch_add(1, Ordering::Relaxed);
    let began = Instant::now();
    let outcome = match ask.priority {
        Priority::Background => classify(&gateway.call(ask.clone()).await),
        Priority::Critical => {
            let (result, first_token) = gateway.stream(ask.clone()).await;
            if let Some((role, ttft)) = first_token {
                tally.record_first_token(role, ttft);
            }
            classify(&result)
        }
    };
    tally.in_flight.fetch_sub(1, Ordering::Relaxed);
    tally.record(ask.priority, outcome, began.elapsed());
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popular_tasks_are_picked_most() {
        let mix = TaskMix::new();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = [0u32; TASKS];
        for _ in 0..20_000 {
            counts[mix.pick(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10]);
        assert!(counts[0] > 20 * counts[TASKS - 1].max(1) / 2);
        assert!(
            counts.iter().filter(|&&c| c > 0).count() > TASKS / 2,
            "a long tail"
        );
    }

    #[test]
    fn a_plan_walks_its_steps_and_agents_on_one_task_share_questions() {
        let mix = TaskMix::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut plan = Plan::new(&mix, &mut rng);
        let mut steps = 0;
        while !plan.is_finished() {
            let asks = plan.next_step(&mut rng, "user-0", 0);
            assert!((1..=2).contains(&asks.len()));
            assert!(asks.iter().all(|ask| ask.user == "user-0"));
            assert!(asks.iter().all(|ask| ask.priority == Priority::Critical));
            assert!(
                asks.iter()
                    .all(|ask| ask.expected_tokens() < ask.budget_cost())
            );
            steps += 1;
        }
        assert!((3..=6).contains(&steps));

        let mut a = Plan {
            task: 4,
            steps: 3,
            done: 0,
        };
        let mut b = Plan {
            task: 4,
            steps: 5,
            done: 0,
        };
        let first_a = a.next_step(&mut rng, "user-1", 1).remove(0);
        let first_b = b.next_step(&mut rng, "user-2", 2).remove(0);
        assert_eq!(first_a.prompt, first_b.prompt);
        assert_eq!(first_b.priority, Priority::Background);
        assert_eq!(
            (0..8)
                .filter(|a| Priority::of_agent(*a) == Priority::Critical)
                .count(),
            2
        );
    }
}
