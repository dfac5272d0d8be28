//! The fair queue in front of the sandbox: every call into a module (a decision,
//! `validate-config`, `describe`) takes a slot here first.
//!
//! Slots are shared out per tenant (the namespace a call is made for): a tenant
//! runs at most its share at once, all tenants together at most the global cap,
//! which stays below the instance pool's size so instantiation never meets a full
//! pool. When a slot frees, the tenants with calls waiting are served in turn, so a
//! tenant that saturates its share only makes its own calls wait. Each tenant's
//! waiting line is bounded too: past it a call is refused at once as [`Busy`], which
//! the controller treats as "try again later", never as a module failure.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How the queue shares slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Calls running at once, all tenants together.
    pub global: usize,
    /// Calls one tenant runs at once.
    pub per_tenant: usize,
    /// Calls one tenant may have waiting; more are refused as busy.
    pub waiting_per_tenant: usize,
}

impl QueueConfig {
    /// A configuration for a pool of `pool` instances: the global cap leaves a quarter
    /// of the pool (at least one slot) for tools, a tenant gets a quarter of the cap.
    pub fn for_pool(pool: usize) -> QueueConfig {
        let global = pool.saturating_sub((pool / 4).max(1)).max(1);
        QueueConfig {
            global,
            per_tenant: (global / 3).max(1),
            waiting_per_tenant: 64,
        }
    }
}

/// A call was refused because its tenant already has its whole waiting line full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the sandbox is busy with namespace {tenant}'s calls ({waiting} waiting); this call will be retried"
)]
pub struct Busy {
    /// The tenant.
    pub tenant: String,
    /// How many of its calls were waiting.
    pub waiting: usize,
}

/// What the scheduler says to a call that asks for a slot.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Run now.
    Run,
    /// Wait; this ticket is served later.
    Wait(u64),
    /// Refused: the tenant's waiting line is full.
    Busy(Busy),
}

#[derive(Debug, Default)]
struct Tenant {
    running: usize,
    waiting: VecDeque<u64>,
}

/// The queue's bookkeeping, without any waiting: which call runs next. Pure, so
/// its fairness is tested as a table of events.
#[derive(Debug)]
pub struct Scheduler {
    config: QueueConfig,
    running: usize,
    tenants: HashMap<String, Tenant>,
    /// Tenants with calls waiting, in the order they are served.
    turn: VecDeque<String>,
    next_ticket: u64,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(config: QueueConfig) -> Scheduler {
        Scheduler {
            config,
            running: 0,
            tenants: HashMap::new(),
            turn: VecDeque::new(),
            next_ticket: 0,
        }
    }

    /// A call of `tenant` asks for a slot.
    pub fn admit(&mut self, tenant: &str) -> Admission {
        let config = self.config;
        let can_run = self.running < config.global;
        let entry = self.tenants.entry(tenant.to_owned()).or_default();
        if can_run && entry.running < config.per_tenant && entry.waiting.is_empty() {
            entry.running += 1;
            self.running += 1;
            return Admission::Run;
        }
        if entry.waiting.len() >= config.waiting_per_tenant {
            let busy = Busy {
                tenant: tenant.to_owned(),
                waiting: entry.waiting.len(),
            };
            self.forget_idle(tenant);
            return Admission::Busy(busy);
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if entry.waiting.is_empty() {
            self.turn.push_back(tenant.to_owned());
        }
        entry.waiting.push_back(ticket);
        Admission::Wait(ticket)
    }

    /// A running call of `tenant` ended; returns the tickets that run now, with
    /// their tenants.
    pub fn release(&mut self, tenant: &str) -> Vec<(String, u64)> {
        if let Some(entry) = self.tenants.get_mut(tenant) {
            entry.running = entry.running.saturating_sub(1);
            self.running = self.running.saturating_sub(1);
        }
        let started = self.dispatch();
        self.forget_idle(tenant);
        started
    }

    /// A waiting call gave up (its caller went away) before it was served.
    pub fn cancel(&mut self, tenant: &str, ticket: u64) -> Vec<(String, u64)> {
        if let Some(entry) = self.tenants.get_mut(tenant) {
            entry.waiting.retain(|t| *t != ticket);
            if entry.waiting.is_empty() {
                self.turn.retain(|t| t != tenant);
            }
        }
        self.forget_idle(tenant);
        self.dispatch()
    }

    /// Calls running now: all, and of `tenant`.
    pub fn running(&self, tenant: &str) -> (usize, usize) {
        (
            self.running,
            self.tenants.get(tenant).map_or(0, |t| t.running),
        )
    }

    /// Calls of `tenant` waiting now.
    pub fn waiting(&self, tenant: &str) -> usize {
        self.tenants.get(tenant).map_or(0, |t| t.waiting.len())
    }

    /// Serves waiting calls while slots are free, one tenant after the other.
    fn dispatch(&mut self) -> Vec<(String, u64)> {
        let mut started = Vec::new();
        let mut skipped = 0;
        while self.running < self.config.global && skipped < self.turn.len() {
            let Some(tenant) = self.turn.pop_front() else {
                break;
            };
            let per_tenant = self.config.per_tenant;
            let entry = self.tenants.entry(tenant.clone()).or_default();
            if entry.running >= per_tenant {
                // At its share: it keeps its place in the line, the next tenant goes.
                self.turn.push_back(tenant);
                skipped += 1;
                continue;
            }
            skipped = 0;
            if let Some(ticket) = entry.waiting.pop_front() {
                entry.running += 1;
                self.running += 1;
                started.push((tenant.clone(), ticket));
            }
            if !entry.waiting.is_empty() {
                self.turn.push_back(tenant);
            }
        }
        started
    }

    fn forget_idle(&mut self, tenant: &str) {
        if self
            .tenants
            .get(tenant)
            .is_some_and(|t| t.running == 0 && t.waiting.is_empty())
        {
            self.tenants.remove(tenant);
        }
    }
}

/// The scheduler with waiting: calls `acquire` a slot and hold the [`Slot`] while
/// they run.
#[derive(Debug)]
pub struct FairQueue {
    state: Mutex<QueueState>,
}

#[derive(Debug)]
struct QueueState {
    scheduler: Scheduler,
    wakers: HashMap<u64, oneshot::Sender<()>>,
}

impl FairQueue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Arc<FairQueue> {
        Arc::new(FairQueue {
            state: Mutex::new(QueueState {
                scheduler: Scheduler::new(config),
                wakers: HashMap::new(),
            }),
        })
    }

    /// Waits for a slot for a call of `tenant`.
    pub async fn acquire(self: &Arc<Self>, tenant: &str) -> Result<Slot, Busy> {
        let waiting = {
            let mut state = self.lock();
            match state.scheduler.admit(tenant) {
                Admission::Run => None,
                Admission::Busy(busy) => return Err(busy),
                Admission::Wait(ticket) => {
                    let (tx, rx) = oneshot::channel();
                    state.wakers.insert(ticket, tx);
                    Some((ticket, rx))
                }
            }
        };
        if let Some((ticket, rx)) = waiting {
            // Should this future be dropped while it waits, the guard takes the ticket
            // back out of the line, or hands on a slot that was already given to it.
            let mut guard = WaitGuard {
                queue: self,
                tenant,
                ticket,
                done: false,
            };
            // The sender lives in the queue until the ticket is served.
            let _ = rx.await;
            guard.done = true;
        }
        Ok(Slot {
            queue: self.clone(),
            tenant: tenant.to_owned(),
        })
    }

    /// Calls running now: all, and of `tenant`.
    pub fn running(&self, tenant: &str) -> (usize, usize) {
        self.lock().scheduler.running(tenant)
    }

    /// Calls of `tenant` waiting now.
    pub fn waiting(&self, tenant: &str) -> usize {
        self.lock().scheduler.waiting(tenant)
    }

    fn release(&self, tenant: &str) {
        let started = {
            let mut state = self.lock();
            let started = state.scheduler.release(tenant);
            take_wakers(&mut state, started)
        };
        wake(started);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // The state is consistent between statements: recover it after a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn take_wakers(state: &mut QueueState, started: Vec<(String, u64)>) -> Vec<oneshot::Sender<()>> {
    started
        .into_iter()
        .filter_map(|(_, ticket)| state.wakers.remove(&ticket))
        .collect()
}

fn wake(wakers: Vec<oneshot::Sender<()>>) {
    for waker in wakers {
        let _ = waker.send(());
    }
}

struct WaitGuard<'a> {
    queue: &'a Arc<FairQueue>,
    tenant: &'a str,
    ticket: u64,
    done: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let started = {
            let mut state = self.queue.lock();
            if state.wakers.remove(&self.ticket).is_some() {
                // Still in the line: leave it.
                let started = state.scheduler.cancel(self.tenant, self.ticket);
                take_wakers(&mut state, started)
            } else {
                // Served already: the slot was counted as running; give it back.
                let started = state.scheduler.release(self.tenant);
                take_wakers(&mut state, started)
            }
        };
        wake(started);
    }
}

/// A slot in the sandbox, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    queue: Arc<FairQueue>,
    tenant: String,
}

impl Slot {
    /// The tenant the slot is for.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.queue.release(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(global: usize, per_tenant: usize, waiting: usize) -> QueueConfig {
        QueueConfig {
            global,
            per_tenant,
            waiting_per_tenant: waiting,
        }
    }

    #[test]
    fn a_tenant_runs_at_most_its_share() {
        let mut s = Scheduler::new(config(4, 2, 8));
        assert_eq!(s.admit("evil"), Admission::Run);
        assert_eq!(s.admit("evil"), Admission::Run);
        assert_eq!(s.admit("evil"), Admission::Wait(0));
        // Another tenant still runs at once.
        assert_eq!(s.admit("good"), Admission::Run);
        assert_eq!(s.running("evil"), (3, 2));
    }

    #[test]
    fn the_global_cap_holds_across_tenants() {
        let mut s = Scheduler::new(config(3, 2, 8));
        let admitted: Vec<Admission> = ["a", "a", "b", "b", "c"]
            .iter()
            .map(|t| s.admit(t))
            .collect();
        assert_eq!(
            admitted,
            vec![
                Admission::Run,
                Admission::Run,
                Admission::Run,
                Admission::Wait(0),
                Admission::Wait(1)
            ]
        );
        assert_eq!(s.running("a"), (3, 2));
    }

    #[test]
    fn a_freed_slot_goes_to_the_next_tenant_in_turn() {
        let mut s = Scheduler::new(config(2, 2, 8));
        assert_eq!(s.admit("evil"), Admission::Run);
        assert_eq!(s.admit("evil"), Admission::Run);
        // evil queues three more, then good and other queue one each.
        assert_eq!(s.admit("evil"), Admission::Wait(0));
        assert_eq!(s.admit("evil"), Admission::Wait(1));
        assert_eq!(s.admit("good"), Admission::Wait(2));
        assert_eq!(s.admit("other"), Admission::Wait(3));
        // evil was first in line, then good, then other: each gets one turn.
        assert_eq!(s.release("evil"), vec![("evil".to_owned(), 0)]);
        assert_eq!(s.release("evil"), vec![("good".to_owned(), 2)]);
        assert_eq!(s.release("evil"), vec![("other".to_owned(), 3)]);
        assert_eq!(s.release("good"), vec![("evil".to_owned(), 1)]);
    }

    #[test]
    fn a_tenant_at_its_share_does_not_block_the_line() {
        let mut s = Scheduler::new(config(3, 1, 8));
        assert_eq!(s.admit("evil"), Admission::Run);
        assert_eq!(s.admit("evil"), Admission::Wait(0));
        assert_eq!(s.admit("a"), Admission::Run);
        assert_eq!(s.admit("b"), Admission::Run);
        assert_eq!(s.admit("c"), Admission::Wait(1));
        // a slot frees: evil is first in line but at its share, c runs.
        assert_eq!(s.release("a"), vec![("c".to_owned(), 1)]);
        assert_eq!(s.release("evil"), vec![("evil".to_owned(), 0)]);
    }

    #[test]
    fn a_full_waiting_line_is_busy_not_a_failure() {
        let mut s = Scheduler::new(config(1, 1, 2));
        assert_eq!(s.admit("evil"), Admission::Run);
        assert_eq!(s.admit("evil"), Admission::Wait(0));
        assert_eq!(s.admit("evil"), Admission::Wait(1));
        assert_eq!(
            s.admit("evil"),
            Admission::Busy(Busy {
                tenant: "evil".into(),
                waiting: 2
            })
        );
        // Another tenant's line is its own.
        assert_eq!(s.admit("good"), Admission::Wait(2));
    }

    #[test]
    fn a_cancelled_wait_leaves_the_line() {
        let mut s = Scheduler::new(config(1, 1, 4));
        assert_eq!(s.admit("a"), Admission::Run);
        assert_eq!(s.admit("b"), Admission::Wait(0));
        assert_eq!(s.admit("c"), Admission::Wait(1));
        assert_eq!(s.cancel("b", 0), vec![]);
        assert_eq!(s.waiting("b"), 0);
        assert_eq!(s.release("a"), vec![("c".to_owned(), 1)]);
    }

    #[test]
    fn pool_sizing_leaves_room() {
        let c = QueueConfig::for_pool(16);
        assert_eq!((c.global, c.per_tenant), (12, 4));
        let tiny = QueueConfig::for_pool(1);
        assert_eq!((tiny.global, tiny.per_tenant), (1, 1));
    }

    #[tokio::test]
    async fn slots_are_handed_on_when_dropped() {
        let queue = FairQueue::new(config(1, 1, 4));
        let first = queue.acquire("a").await.expect("slot");
        let waiting = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.acquire("b").await.map(|s| s.tenant().to_owned()) })
        };
        // The waiter is in line once the queue counts it.
        while queue.waiting("b") == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(waiting.await.expect("task"), Ok("b".to_owned()));
        assert_eq!(queue.running("b"), (0, 0));
    }

    #[tokio::test]
    async fn an_abandoned_wait_gives_its_turn_away() {
        let queue = FairQueue::new(config(1, 1, 4));
        let first = queue.acquire("a").await.expect("slot");
        let abandoned = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let _ = queue.acquire("b").await;
            })
        };
        while queue.waiting("b") == 0 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(queue.waiting("b"), 0);
        drop(first);
        let again = queue.acquire("c").await.expect("slot");
        assert_eq!(queue.running("c"), (1, 1));
        drop(again);
    }
}
