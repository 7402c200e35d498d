//! `PayReconciler`: step 6 of the seed's payment flow. Notifications get lost, so every
//! few seconds (a tokio-cron-scheduler job that only sends `Tick`) the reconciler claims
//! the pay logs that are due, asks WeChat's orderquery about each (bounded concurrency, a
//! rate limit), and tells the saga what WeChat says — through the same path and checks as
//! a notification. Passes never overlap: a Tick that arrives during a pass is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::Sagas;
use crate::clock::Clock;
use crate::domain::{Money, OrderId};
use crate::queue::{PayLogEntry, PayLogQueue, QueueStats};
use crate::store::Db;
use crate::workflows::checkout::{Event, Outcome, Payment, Phase};
use crate::wxpay::{PaymentGateway, TradeState};

/// How a pass goes.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// Who claims (lease owner): unique per process.
    pub owner: String,
    pub batch: i64,
    pub lease_ms: i64,
    /// orderquery calls in flight at once.
    pub concurrency: usize,
    /// orderquery calls per second, at most.
    pub qps: f64,
    /// Delay before check n+1 after n checks; the last repeats (10 s, 30 s, 1 m, 2 m, 5 m).
    pub backoff_ms: Vec<i64>,
    /// Most batches one pass takes, so a huge backlog cannot hold a pass forever.
    pub max_batches: usize,
}

impl ReconcileSettings {
    /// When to check again an entry checked `attempts` times, at `now_ms`.
    pub fn next_check_at(&self, attempts: u32, now_ms: i64) -> i64 {
        let i = (attempts as usize).min(self.backoff_ms.len().saturating_sub(1));
        now_ms + self.backoff_ms.get(i).copied().unwrap_or(300_000)
    }
}

/// Counters since the process started.
#[derive(Debug, Default)]
pub struct ReconcilerCounters {
    pub passes: AtomicU64,
    pub ticks_skipped: AtomicU64,
    pub claimed: AtomicU64,
    pub queried: AtomicU64,
    pub paid: AtomicU64,
    pub rescheduled: AtomicU64,
    pub removed: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcilerStats {
    pub passes: u64,
    pub ticks_skipped: u64,
    pub claimed: u64,
    pub queried: u64,
    pub paid_by_reconciliation: u64,
    pub rescheduled: u64,
    pub removed: u64,
    pub failed: u64,
    pub running: bool,
    pub queue: QueueStats,
}

pub struct ReconcilerDeps {
    pub db: Db,
    pub queue: Arc<dyn PayLogQueue>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub sagas: Sagas,
    pub clock: Arc<dyn Clock>,
    pub settings: ReconcileSettings,
    pub counters: ReconcilerCounters,
    limiter: RateLimiter,
}

impl ReconcilerDeps {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        queue: Arc<dyn PayLogQueue>,
        gateway: Arc<dyn PaymentGateway>,
        sagas: Sagas,
        clock: Arc<dyn Clock>,
        settings: ReconcileSettings,
    ) -> Arc<Self> {
        let limiter = RateLimiter::new(settings.qps);
        Arc::new(Self {
            db,
            queue,
            gateway,
            sagas,
            clock,
            settings,
            counters: ReconcilerCounters::default(),
            limiter,
        })
    }
}

/// Spaces calls at least `1/qps` apart. A tokio mutex: held only to take a slot.
struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new(qps: f64) -> Self {
        let interval = if qps > 0.0 {
            Duration::from_secs_f64(1.0 / qps)
        } else {
            Duration::ZERO
        };
        Self {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    async fn acquire(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileOutcome {
    /// Nothing was due.
    Drained,
    /// This many entries were handled.
    Processed(usize),
}

/// One pass: resync the index, then claim and check due entries in batches.
pub async fn reconcile_once(deps: &ReconcilerDeps) -> anyhow::Result<ReconcileOutcome> {
    deps.counters.passes.fetch_add(1, Ordering::Relaxed);
    deps.queue.resync().await?;
    let mut handled = 0;
    for _ in 0..deps.settings.max_batches {
        let now = deps.clock.now().timestamp_millis();
        let batch = deps
            .queue
            .claim_due(
                &deps.settings.owner,
                now,
                deps.settings.lease_ms,
                deps.settings.batch,
            )
            .await?;
        if batch.is_empty() {
            break;
        }
        deps.counters
            .claimed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        handled += batch.len();
        futures::stream::iter(batch)
            .for_each_concurrent(deps.settings.concurrency.max(1), |entry| async move {
                if let Err(e) = check(deps, &entry).await {
                    deps.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(out_trade_no = %entry.out_trade_no, error = ?e, "RECON-001: pay log check failed");
                    let now = deps.clock.now().timestamp_millis();
                    let _ = deps.queue.reschedule(&entry.out_trade_no, deps.settings.next_check_at(entry.attempts, now)).await;
                    deps.counters.rescheduled.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
    }
    Ok(if handled == 0 {
        ReconcileOutcome::Drained
    } else {
        ReconcileOutcome::Processed(handled)
    })
}

/// Checks one entry with WeChat and acts on its `trade_state`.
async fn check(deps: &ReconcilerDeps, entry: &PayLogEntry) -> anyhow::Result<()> {
    let c = &deps.counters;
    let reschedule = |attempts: u32| async move {
        let now = deps.clock.now().timestamp_millis();
        deps.queue
            .reschedule(
                &entry.out_trade_no,
                deps.settings.next_check_at(attempts, now),
            )
            .await?;
        c.rescheduled.fetch_add(1, Ordering::Relaxed);
        anyhow::Ok(())
    };
    let Ok(order) = entry.out_trade_no.parse::<OrderId>() else {
        deps.queue.remove(&entry.out_trade_no).await?;
        c.removed.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let saga = match deps.db.load_saga(order).await? {
        Some(s) if !s.state.phase.is_terminal() => s.state,
        // The saga is finished: nothing left to find out.
        Some(_) | None => {
            deps.queue.remove(&entry.out_trade_no).await?;
            c.removed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    };
    if saga.phase != Phase::AwaitingPayment || saga.wx.is_none() {
        // Busy (paying, undoing), or no WeChat order yet (the pay page was never opened):
        // nothing WeChat could tell us now.
        return reschedule(entry.attempts).await;
    }
    deps.limiter.acquire().await;
    c.queried.fetch_add(1, Ordering::Relaxed);
    let event = match deps.gateway.query(&entry.out_trade_no).await {
        Ok(TradeState::Success(t)) => Event::PaymentConfirmed {
            payment: Payment {
                transaction_id: t.transaction_id,
                amount: Money::from_fen(t.total_fee),
                paid_at_ms: t.paid_at_ms,
            },
        },
        Ok(TradeState::NotPay | TradeState::UserPaying | TradeState::Accept) => {
            return reschedule(entry.attempts).await;
        }
        Ok(state @ (TradeState::Closed | TradeState::Revoked | TradeState::PayError)) => {
            Event::PaymentFailed {
                reason: format!("orderquery says {state:?}"),
            }
        }
        Ok(TradeState::Refund) => {
            crate::store::sagas::record_alert(
                &deps.db,
                order,
                "refund_state",
                &entry.out_trade_no,
                deps.clock.now().timestamp_millis(),
            )
            .await?;
            return reschedule(entry.attempts).await;
        }
        Err(e) if e.err_code() == Some("ORDERNOTEXIST") => return reschedule(entry.attempts).await,
        Err(e) => anyhow::bail!("orderquery: {e}"),
    };
    let paid = matches!(event, Event::PaymentConfirmed { .. });
    match deps.sagas.deliver(order, event).await? {
        Outcome::Applied if paid => {
            c.paid.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%order, "payment found by reconciliation");
        }
        Outcome::Applied | Outcome::Ignored(_) | Outcome::Alerted => {}
    }
    // Normally the saga's transaction removed the entry; if it is still there (the saga
    // is undoing, or the event was refused), look again later.
    reschedule(entry.attempts).await
}

pub struct PayReconciler;

pub enum ReconcilerMsg {
    Tick,
    PassDone,
    Stats(RpcReplyPort<ReconcilerStats>),
}

pub struct ReconcilerState {
    deps: Arc<ReconcilerDeps>,
    running: bool,
}

impl Actor for PayReconciler {
    type Msg = ReconcilerMsg;
    type State = ReconcilerState;
    type Arguments = Arc<ReconcilerDeps>;

    async fn pre_start(
        &self,
        _me: ActorRef<ReconcilerMsg>,
        deps: Arc<ReconcilerDeps>,
    ) -> Result<ReconcilerState, ActorProcessingErr> {
        Ok(ReconcilerState {
            deps,
            running: false,
        })
    }

    async fn handle(
        &self,
        me: ActorRef<ReconcilerMsg>,
        msg: ReconcilerMsg,
        st: &mut ReconcilerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReconcilerMsg::Tick if st.running => {
                st.deps
                    .counters
                    .ticks_skipped
                    .fetch_add(1, Ordering::Relaxed);
            }
            ReconcilerMsg::Tick => {
                st.running = true;
                let deps = st.deps.clone();
                // The pass runs on its own task: the actor stays free to answer Stats and
                // to drop Ticks while it runs.
                tokio::spawn(async move {
                    if let Err(e) = reconcile_once(&deps).await {
                        tracing::warn!(error = ?e, "RECON-002: reconcile pass failed");
                    }
                    let _ = me.cast(ReconcilerMsg::PassDone);
                });
            }
            ReconcilerMsg::PassDone => st.running = false,
            ReconcilerMsg::Stats(reply) => {
                let deps = st.deps.clone();
                let running = st.running;
                tokio::spawn(async move {
                    let _ = reply.send(stats(&deps, running).await);
                });
            }
        }
        Ok(())
    }
}

async fn stats(deps: &ReconcilerDeps, running: bool) -> ReconcilerStats {
    let c = &deps.counters;
    let now = deps.clock.now().timestamp_millis();
    ReconcilerStats {
        passes: c.passes.load(Ordering::Relaxed),
        ticks_skipped: c.ticks_skipped.load(Ordering::Relaxed),
        claimed: c.claimed.load(Ordering::Relaxed),
        queried: c.queried.load(Ordering::Relaxed),
        paid_by_reconciliation: c.paid.load(Ordering::Relaxed),
        rescheduled: c.rescheduled.load(Ordering::Relaxed),
        removed: c.removed.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        running,
        queue: deps.queue.stats(now).await.unwrap_or_default(),
    }
}

/// A handle on the reconciler: its actor and the cron job that ticks it.
#[derive(Clone)]
pub struct Reconciler {
    actor: ActorRef<ReconcilerMsg>,
    scheduler: Arc<Mutex<Option<tokio_cron_scheduler::JobScheduler>>>,
    pub deps: Arc<ReconcilerDeps>,
}

impl Reconciler {
    /// Starts the actor and, with a cron expression (six fields, seconds first), the job
    /// that sends it a Tick on that schedule.
    pub async fn start(
        deps: Arc<ReconcilerDeps>,
        cron: Option<&str>,
    ) -> anyhow::Result<Reconciler> {
        let (actor, _) = Actor::spawn(None, PayReconciler, deps.clone())
            .await
            .map_err(|e| anyhow::anyhow!("starting the reconciler: {e}"))?;
        let scheduler = match cron {
            Some(expr) => {
                let sched = tokio_cron_scheduler::JobScheduler::new().await?;
                let target = actor.clone();
                let job = tokio_cron_scheduler::Job::new_async(expr, move |_id, _sched| {
                    let target = target.clone();
                    Box::pin(async move {
                        let _ = target.cast(ReconcilerMsg::Tick);
                    })
                })
                .map_err(|e| anyhow::anyhow!("--reconcile-cron `{expr}`: {e}"))?;
                sched.add(job).await?;
                sched.start().await?;
                Some(sched)
            }
            None => None,
        };
        Ok(Reconciler {
            actor,
            scheduler: Arc::new(Mutex::new(scheduler)),
            deps,
        })
    }

    pub fn tick(&self) {
        let _ = self.actor.cast(ReconcilerMsg::Tick);
    }

    pub async fn stats(&self) -> anyhow::Result<ReconcilerStats> {
        ractor::call_t!(self.actor, ReconcilerMsg::Stats, 10_000)
            .map_err(|e| anyhow::anyhow!("reconciler did not answer: {e}"))
    }

    /// Stops the schedule first (no new ticks), then the actor. A pass in flight is
    /// abandoned: its claims lapse and are picked up again (at least once).
    pub async fn stop(&self) {
        if let Some(mut sched) = self.scheduler.lock().await.take() {
            let _ = sched.shutdown().await;
        }
        self.actor.stop(None);
    }
}
