//! The simulated agents: users whose agents work through multi-step plans, with prompts
//! that repeat and overlap across the fleet, and that retry failed calls. backstop-load
//! decides when each ask is sent; the agents decide what it asks.

use backstop::core::{Service, service_fn};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

use crate::outcome::{GatewayError, GatewayResult, Tally, classify};
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
    /// The arrival it was sent as (seeds its retry jitter).
    pub(crate) id: u64,
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
        id: 0,
        user: user.to_string(),
        prompt_tokens: 40 + (prompt.len() as u64) * 2,
        max_tokens: 200 + rng.u64(0..400),
        prompt,
        priority,
    }
}

/// Asks per second each agent sends at the pattern's base rate: the open-loop arrival
/// rate is this times the number of agents.
pub(crate) const ASKS_PER_AGENT: f64 = 5.0;
/// Retries after a failed call, with exponential backoff from this delay.
const RETRIES: u32 = 2;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Two agents per user.
pub(crate) fn users(agents: usize) -> usize {
    agents.div_ceil(2)
}

/// One agent: the user it works for, its plan and the asks of its current step.
struct Agent {
    user: String,
    rng: fastrand::Rng,
    plan: Plan,
    pending: VecDeque<Ask>,
}

/// The simulated agents as backstop-load's request builder: arrival `i` is the next ask
/// of agent `i mod agents`, which works through plan after plan. The arrivals themselves
/// are backstop-load's (open loop: an agent's next ask does not wait for its last answer,
/// so a slow gateway shows as latency, not as less load).
pub(crate) struct Fleet {
    agents: Vec<Agent>,
    mix: TaskMix,
    /// Plans the agents finished.
    pub(crate) plans: u64,
}

impl Fleet {
    pub(crate) fn new(agents: usize) -> Self {
        let mix = TaskMix::new();
        let agents = (0..agents)
            .map(|agent| {
                let mut rng = fastrand::Rng::with_seed(agent as u64);
                Agent {
                    user: format!("user-{}", agent % users(agents)),
                    plan: Plan::new(&mix, &mut rng),
                    rng,
                    pending: VecDeque::new(),
                }
            })
            .collect();
        Self {
            agents,
            mix,
            plans: 0,
        }
    }

    /// The ask of arrival `i`.
    pub(crate) fn ask(&mut self, i: u64) -> Ask {
        let index = (i % self.agents.len() as u64) as usize;
        let agent = &mut self.agents[index];
        loop {
            if let Some(mut ask) = agent.pending.pop_front() {
                ask.id = i;
                return ask;
            }
            if agent.plan.is_finished() {
                self.plans += 1;
                agent.plan = Plan::new(&self.mix, &mut agent.rng);
            }
            let step = agent.plan.next_step(&mut agent.rng, &agent.user, index);
            agent.pending.extend(step);
        }
    }
}

/// The gateway as the service backstop-load drives: one agent's ask, read whole
/// (background agents) or as a stream (critical agents), retried with backoff while the
/// failure may pass. Its error is the stack's own, so backstop-load classes each outcome
/// (ok, a refusal and its kind, an error) from it; the gateway's own tally adds what only
/// the gateway knows: the HTTP status, the priority class and time to first token.
pub(crate) fn agent_service(
    gateway: Arc<Gateway>,
    tally: Arc<Tally>,
) -> impl Service<Ask, Response = (), Error = GatewayError> {
    service_fn(move |ask: Ask| {
        let (gateway, tally) = (gateway.clone(), tally.clone());
        async move { send_with_retries(&gateway, &tally, ask).await }
    })
}

async fn send_with_retries(gateway: &Gateway, tally: &Tally, ask: Ask) -> GatewayResult<()> {
    let mut rng = fastrand::Rng::with_seed(ask.id);
    tally.in_flight.fetch_add(1, Ordering::Relaxed);
    let began = Instant::now();
    let mut result = send(gateway, tally, &ask).await;
    let mut backoff = FIRST_BACKOFF;
    for _ in 0..RETRIES {
        if !classify(&result).is_retryable() {
            break;
        }
        tally.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff.mul_f64(0.5 + rng.f64())).await;
        backoff *= 2;
        result = send(gateway, tally, &ask).await;
    }
    tally.in_flight.fetch_sub(1, Ordering::Relaxed);
    tally.record(ask.priority, classify(&result), began.elapsed());
    result
}

async fn send(gateway: &Gateway, tally: &Tally, ask: &Ask) -> GatewayResult<()> {
    tally
        .tokens_without_backstop
        .fetch_add(ask.expected_tokens(), Ordering::Relaxed);
    match ask.priority {
        Priority::Background => gateway.call(ask.clone()).await.map(drop),
        Priority::Critical => {
            let (result, first_token) = gateway.stream(ask.clone()).await;
            if let Some((role, ttft)) = first_token {
                tally.record_first_token(role, ttft);
            }
            result
        }
    }
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
    fn arrivals_go_round_the_agents_and_each_walks_its_plans() {
        let mut fleet = Fleet::new(4);
        let asks: Vec<Ask> = (0..400).map(|i| fleet.ask(i)).collect();
        assert!(asks.iter().enumerate().all(|(i, ask)| ask.id == i as u64));
        assert_eq!(asks[0].user, "user-0");
        assert_eq!(asks[1].user, "user-1");
        assert_eq!(asks[2].user, "user-0", "two agents per user");
        assert_eq!(asks[0].priority, Priority::Critical);
        assert_eq!(asks[1].priority, Priority::Background);
        // 100 asks each, 3 to 6 steps a plan and at most two asks a step.
        assert!((8..=4 * 34).contains(&fleet.plans), "{}", fleet.plans);
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
