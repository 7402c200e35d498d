//! `OrderSaga`: one actor per active order. It loads its saga from the database, runs the
//! pending step, and for each event asks the pure workflow what to do. Every transition
//! is committed (effect + journal + saga row, one transaction) before it is acted upon, so
//! the actor can be killed at any point and a new one resumes from the database.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::SagaDeps;
use super::supervisor::{SagaView, SupervisorMsg};
use crate::domain::{Money, OrderId};
use crate::store::sagas::{StoredSaga, TransitionError, raise_alert, record_transition};
use crate::store::{StoreTx, inventory, loyalty, orders, pay_log};
use crate::workflows::checkout::{
    Command, Event, Outcome, Payment, Phase, SagaState, decide, pending_command,
};
use crate::wxpay::{CloseOutcome, NativeOrder, TradeState, WxError};

pub struct OrderSaga;

pub enum SagaMsg {
    /// An event from outside (payment, cancel, deadline, operator retry); the reply, if
    /// asked for, says how the workflow treated it.
    Event(Event, Option<RpcReplyPort<Outcome>>),
    /// The pending step's backoff is over.
    RetryDue,
    /// Time to check whether the saga has been idle long enough to leave memory.
    IdleCheck,
    /// The pay page wants the QR code: create the WeChat Native order once.
    Native(RpcReplyPort<Result<NativeInfo, NativeError>>),
}

/// What the pay page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeInfo {
    pub code_url: String,
    pub out_trade_no: String,
    pub total_fee: i64,
    pub deadline_at_ms: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum NativeError {
    #[error("the order cannot be paid now: it is {0}")]
    NotPayable(&'static str),
    #[error(transparent)]
    Gateway(#[from] WxError),
}

pub struct OrderSagaArgs {
    pub order: OrderId,
    pub deps: Arc<SagaDeps>,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub view: Arc<watch::Sender<SagaView>>,
}

pub struct SagaActorState {
    order: OrderId,
    deps: Arc<SagaDeps>,
    supervisor: ActorRef<SupervisorMsg>,
    /// `None` until loaded in `post_start`, and if the saga does not exist.
    saga: Option<StoredSaga>,
    view: Arc<watch::Sender<SagaView>>,
    /// Timers are tokio tasks that outlive the actor unless aborted: each is kept here and
    /// aborted when replaced and in `post_stop`.
    deadline_timer: Option<JoinHandle<()>>,
    retry_timer: Option<JoinHandle<()>>,
    idle_timer: Option<JoinHandle<()>>,
    last_activity_ms: i64,
    /// Set once the supervisor was asked to passivate this actor: asked only once.
    leaving: bool,
}

impl Actor for OrderSaga {
    type Msg = SagaMsg;
    type State = SagaActorState;
    type Arguments = OrderSagaArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SagaMsg>,
        args: OrderSagaArgs,
    ) -> Result<SagaActorState, ActorProcessingErr> {
        // No I/O here: the supervisor waits for pre_start. Loading happens in post_start,
        // on the saga's own task, before any message is handled.
        Ok(SagaActorState {
            order: args.order,
            last_activity_ms: args.deps.now_ms(),
            deps: args.deps,
            supervisor: args.supervisor,
            saga: None,
            view: args.view,
            deadline_timer: None,
            retry_timer: None,
            idle_timer: None,
            leaving: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SagaMsg>,
        st: &mut SagaActorState,
    ) -> Result<(), ActorProcessingErr> {
        st.reload().await;
        if let Some(cmd) = st.saga.as_ref().and_then(|s| pending_command(&s.state)) {
            st.run(&myself, Some(cmd)).await;
        }
        st.after_message(&myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SagaMsg>,
        msg: SagaMsg,
        st: &mut SagaActorState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, SagaMsg::IdleCheck) {
            st.last_activity_ms = st.deps.now_ms();
        }
        match msg {
            SagaMsg::Event(event, reply) => {
                let (outcome, step) = st.apply(&myself, event).await;
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
                st.run(&myself, step).await;
            }
            SagaMsg::RetryDue => {
                let (_, step) = st.apply(&myself, Event::RetryDue).await;
                st.run(&myself, step).await;
            }
            SagaMsg::IdleCheck => {}
            SagaMsg::Native(reply) => {
                let result = st.native(&myself).await;
                let _ = reply.send(result);
            }
        }
        st.after_message(&myself);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SagaMsg>,
        st: &mut SagaActorState,
    ) -> Result<(), ActorProcessingErr> {
        for timer in [
            st.deadline_timer.take(),
            st.retry_timer.take(),
            st.idle_timer.take(),
        ]
        .into_iter()
        .flatten()
        {
            timer.abort();
        }
        Ok(())
    }
}

/// A step command: effects on the participants, as opposed to timers and alerts.
fn is_step(cmd: &Command) -> bool {
    match cmd {
        Command::ReserveStock { .. }
        | Command::WriteOrder { .. }
        | Command::AwardPoints { .. }
        | Command::ClearCart { .. }
        | Command::EnqueuePayLog { .. }
        | Command::RecordPayment { .. }
        | Command::RevokePoints { .. }
        | Command::CloseOrder { .. }
        | Command::CloseWxOrder { .. }
        | Command::ReleaseStock { .. } => true,
        Command::ScheduleDeadline { .. }
        | Command::ScheduleRetry { .. }
        | Command::RaiseAlert(_) => false,
    }
}

impl SagaActorState {
    async fn reload(&mut self) {
        match self.deps.db.load_saga(self.order).await {
            Ok(saga) => {
                self.saga = saga;
                self.publish();
            }
            Err(e) => {
                tracing::error!(order = %self.order, error = ?e, "SAGA-LOAD-001: cannot load saga")
            }
        }
    }

    fn publish(&self) {
        if let Some(s) = &self.saga {
            self.view.send_replace(SagaView {
                state: Some(Arc::new(s.state.clone())),
                version: s.version,
            });
        }
    }

    /// Applies an event that needs no participant (external events, failures, retries):
    /// decides, commits the transition with any alerts, and returns the step to run next.
    async fn apply(
        &mut self,
        myself: &ActorRef<SagaMsg>,
        event: Event,
    ) -> (Outcome, Option<Command>) {
        for _ in 0..5 {
            let Some(saga) = &self.saga else {
                return (Outcome::Ignored("no such saga"), None);
            };
            let now = self.deps.now_ms();
            let decision = decide(&saga.state, &event, now);
            let has_alerts = decision
                .commands
                .iter()
                .any(|c| matches!(c, Command::RaiseAlert(_)));
            if decision.next == saga.state && !has_alerts {
                // Nothing to record; a due retry still hands back the pending step.
                self.schedule(myself, &decision.commands);
                let step = decision.commands.iter().find(|c| is_step(c)).cloned();
                return (decision.outcome, step);
            }
            let result = self
                .commit(&event, &decision.next, &decision.commands, now)
                .await;
            match result {
                Ok(()) => {
                    self.schedule(myself, &decision.commands);
                    let step = decision.commands.iter().find(|c| is_step(c)).cloned();
                    return (decision.outcome, step);
                }
                Err(TransitionError::VersionConflict(..)) => self.reload().await,
                Err(TransitionError::Store(e)) => {
                    tracing::warn!(order = %self.order, error = ?e, "SAGA-STORE-001: transition not recorded; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        (
            Outcome::Ignored("the saga's store is unavailable; try again"),
            None,
        )
    }

    /// Runs step commands until the saga waits (for payment, a retry, or nothing).
    async fn run(&mut self, myself: &ActorRef<SagaMsg>, mut step: Option<Command>) {
        while let Some(cmd) = step.take() {
            let Some(saga) = &self.saga else { return };
            // Only the state's own pending step runs: after a reload the plan may differ.
            if pending_command(&saga.state).as_ref() != Some(&cmd) {
                step = pending_command(&saga.state).filter(is_step);
                continue;
            }
            if let Command::CloseWxOrder {
                order,
                not_before_ms,
            } = cmd
            {
                step = self.close_wx(myself, order, not_before_ms).await;
                continue;
            }
            step = match self.execute(&cmd).await {
                Ok(next) => next,
                Err(StepError::Conflict) => {
                    self.reload().await;
                    self.saga
                        .as_ref()
                        .and_then(|s| pending_command(&s.state))
                        .filter(is_step)
                }
                Err(StepError::Failed(error)) => {
                    tracing::warn!(order = %self.order, %error, "saga step failed");
                    self.apply(myself, Event::StepFailed { error }).await.1
                }
            };
            if let Some(s) = &self.saga {
                self.schedule(
                    myself,
                    &pending_command(&s.state)
                        .into_iter()
                        .filter(|c| !is_step(c))
                        .collect::<Vec<_>>(),
                );
            }
        }
    }

    /// Closes the WeChat order (never before WeChat's minimum interval) and confirms the
    /// close with orderquery. A payment found on the way takes the payment path.
    async fn close_wx(
        &mut self,
        myself: &ActorRef<SagaMsg>,
        order: OrderId,
        not_before_ms: i64,
    ) -> Option<Command> {
        let now = self.deps.now_ms();
        if now < not_before_ms {
            let me = myself.clone();
            let wait = Duration::from_millis((not_before_ms - now) as u64);
            replace_timer(
                &mut self.retry_timer,
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = me.cast(SagaMsg::RetryDue);
                }),
            );
            return None;
        }
        let key = order.to_string();
        let gateway = self.deps.gateway.clone();
        let event = match gateway.close(&key).await {
            Ok(CloseOutcome::AlreadyClosed | CloseOutcome::NotExist) => Event::WxOrderClosed,
            Ok(CloseOutcome::Closed | CloseOutcome::AlreadyPaid) => match gateway.query(&key).await {
                Ok(TradeState::Closed | TradeState::Revoked | TradeState::PayError) => Event::WxOrderClosed,
                Ok(TradeState::Success(t)) => Event::WxOrderPaid {
                    payment: Payment { transaction_id: t.transaction_id, amount: Money::from_fen(t.total_fee), paid_at_ms: t.paid_at_ms },
                },
                Ok(state @ (TradeState::NotPay | TradeState::UserPaying | TradeState::Accept)) => Event::StepFailed {
                    error: format!("SAGA-WX-003: closed, but orderquery still says {state:?}; checking again"),
                },
                Ok(TradeState::Refund) => Event::StepFailed {
                    error: "SAGA-WX-004: WeChat reports the order paid and refunded; an operator must decide".into(),
                },
                Err(e) if e.err_code() == Some("ORDERNOTEXIST") => Event::WxOrderClosed,
                Err(e) => Event::StepFailed { error: format!("SAGA-WX-002: confirming the close: {e}") },
            },
            Err(e) => Event::StepFailed { error: format!("SAGA-WX-001: closing the WeChat order: {e}") },
        };
        self.apply(myself, event).await.1
    }

    /// Creates the WeChat Native order once (intent journaled first) and returns its QR
    /// link; later calls return the same link.
    async fn native(&mut self, myself: &ActorRef<SagaMsg>) -> Result<NativeInfo, NativeError> {
        let Some(saga) = &self.saga else {
            return Err(NativeError::NotPayable("unknown"));
        };
        if saga.state.phase != Phase::AwaitingPayment {
            return Err(NativeError::NotPayable(saga.state.phase.name()));
        }
        let info = |state: &SagaState, code_url: String| NativeInfo {
            code_url,
            out_trade_no: state.request.order_id.to_string(),
            total_fee: state.pay_money().unwrap_or_default().fen(),
            deadline_at_ms: state.deadline_at_ms(),
        };
        if let Some(code_url) = saga.state.wx.as_ref().and_then(|w| w.code_url.clone()) {
            return Ok(info(&saga.state, code_url));
        }
        if saga.state.wx.is_none() {
            let now = self.deps.now_ms();
            let (outcome, _) = self
                .apply(myself, Event::WxOrderRequested { at_ms: now })
                .await;
            if outcome != Outcome::Applied {
                return Err(NativeError::NotPayable("busy"));
            }
        }
        let state = self
            .saga
            .as_ref()
            .map(|s| s.state.clone())
            .ok_or(NativeError::NotPayable("unknown"))?;
        // The same parameters every time: a re-entry after a crash gets the same code_url.
        let request = NativeOrder {
            out_trade_no: state.request.order_id.to_string(),
            total_fee: state.pay_money().unwrap_or_default().fen(),
            time_expire: crate::store::orders::ms_to_time(state.deadline_at_ms()),
        };
        let prepay = self.deps.gateway.create_native(&request).await?;
        let created = Event::WxOrderCreated {
            prepay_id: prepay.prepay_id,
            code_url: prepay.code_url.clone(),
        };
        self.apply(myself, created).await;
        Ok(info(&state, prepay.code_url))
    }

    /// Executes one step: the participant's effect, the transition and its alerts commit
    /// together. Returns the next step.
    async fn execute(&mut self, cmd: &Command) -> Result<Option<Command>, StepError> {
        let started = std::time::Instant::now();
        let saga = self.saga.clone().expect("run checks the saga is loaded");
        // The cart may live in Redis, outside the transaction: removing lines is
        // idempotent, so doing it again after a crash is harmless.
        if let Command::ClearCart { user, skus } = cmd {
            let user = crate::domain::Username::parse(user)
                .map_err(|e| StepError::Failed(format!("SAGA-CART-001: {e}")))?;
            self.deps
                .cart
                .remove(&user, skus)
                .await
                .map_err(|e| StepError::Failed(format!("SAGA-CART-002: {e:#}")))?;
        }
        let now = self.deps.now_ms();
        let mut tx = self
            .deps
            .db
            .begin_write()
            .await
            .map_err(|e| StepError::Failed(format!("SAGA-STORE-002: {e}")))?;
        let event = match effect(&mut tx, cmd, &saga.state, now, self.deps.first_check_ms).await {
            Ok(Effect::Keep(event)) => event,
            Ok(Effect::RollBack(event)) => {
                // Short of stock: the lines this transaction already took go back first.
                drop(tx);
                tx = self
                    .deps
                    .db
                    .begin_write()
                    .await
                    .map_err(|e| StepError::Failed(format!("SAGA-STORE-002: {e}")))?;
                event
            }
            Err(e) => return Err(StepError::Failed(format!("{}: {e:#}", error_code(cmd)))),
        };
        let decision = decide(&saga.state, &event, now);
        for c in &decision.commands {
            if let Command::RaiseAlert(alert) = c {
                raise_alert(&mut tx, alert, now)
                    .await
                    .map_err(|e| StepError::Failed(format!("SAGA-ALERT-001: {e:#}")))?;
            }
        }
        match record_transition(&mut tx, saga.version, &event, &decision.next, now).await {
            Ok(()) => {}
            Err(TransitionError::VersionConflict(..)) => return Err(StepError::Conflict),
            Err(TransitionError::Store(e)) => {
                return Err(StepError::Failed(format!("SAGA-STORE-003: {e:#}")));
            }
        }
        tx.commit()
            .await
            .map_err(|e| StepError::Failed(format!("SAGA-STORE-004: {e}")))?;
        self.committed(&event, decision.next, started);
        Ok(decision.commands.into_iter().find(is_step))
    }

    /// After a transition committed: the new state is ours, watchers see it, metrics count it.
    fn committed(&mut self, event: &Event, next: SagaState, started: std::time::Instant) {
        let (from, version) = self
            .saga
            .as_ref()
            .map_or((next.phase, 0), |s| (s.state.phase, s.version));
        crate::metrics::transition(from, next.phase, event.kind(), started.elapsed());
        self.saga = Some(StoredSaga {
            state: next,
            version: version + 1,
        });
        self.publish();
    }

    /// Commits a transition that has no participant effect.
    async fn commit(
        &mut self,
        event: &Event,
        next: &SagaState,
        commands: &[Command],
        now: i64,
    ) -> Result<(), TransitionError> {
        let started = std::time::Instant::now();
        let saga = self.saga.as_ref().expect("apply checks the saga is loaded");
        let mut tx = self.deps.db.begin_write().await?;
        for c in commands {
            if let Command::RaiseAlert(alert) = c {
                raise_alert(&mut tx, alert, now).await?;
            }
        }
        record_transition(&mut tx, saga.version, event, next, now).await?;
        tx.commit().await?;
        self.committed(event, next.clone(), started);
        Ok(())
    }

    /// Sets the timers the commands ask for.
    fn schedule(&mut self, myself: &ActorRef<SagaMsg>, commands: &[Command]) {
        let now = self.deps.now_ms();
        for c in commands {
            match c {
                Command::ScheduleDeadline { at_ms } => {
                    let after = Duration::from_millis((*at_ms - now).max(0) as u64);
                    let me = myself.clone();
                    replace_timer(
                        &mut self.deadline_timer,
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = me.cast(SagaMsg::Event(Event::DeadlineReached, None));
                        }),
                    );
                }
                Command::ScheduleRetry { at_ms } => {
                    let after = Duration::from_millis((*at_ms - now).max(0) as u64);
                    let me = myself.clone();
                    replace_timer(
                        &mut self.retry_timer,
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = me.cast(SagaMsg::RetryDue);
                        }),
                    );
                }
                _ => {}
            }
        }
    }

    /// After each message: a finished saga leaves at once; a waiting one after
    /// `passivate_after` without events. Leaving goes through the supervisor, which drains
    /// this actor (queued messages are still handled) and forgets it.
    fn after_message(&mut self, myself: &ActorRef<SagaMsg>) {
        if self.leaving {
            return;
        }
        let phase = self.saga.as_ref().map(|s| s.state.phase);
        let now = self.deps.now_ms();
        let idle_for = now - self.last_activity_ms;
        let passivate_ms = self.deps.passivate_after.as_millis() as i64;
        let leave = match phase {
            None => true,
            Some(p) if p.is_terminal() => true,
            Some(Phase::AwaitingPayment | Phase::Stuck(_)) => idle_for >= passivate_ms,
            Some(_) => false,
        };
        if leave {
            self.leaving = true;
            let _ = self.supervisor.cast(SupervisorMsg::Passivate {
                order: self.order,
                actor: myself.get_id(),
            });
            return;
        }
        if matches!(phase, Some(Phase::AwaitingPayment | Phase::Stuck(_))) {
            let after = Duration::from_millis((passivate_ms - idle_for).max(1) as u64);
            let me = myself.clone();
            replace_timer(
                &mut self.idle_timer,
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = me.cast(SagaMsg::IdleCheck);
                }),
            );
        }
    }
}

fn replace_timer(slot: &mut Option<JoinHandle<()>>, new: JoinHandle<()>) {
    if let Some(old) = slot.replace(new) {
        old.abort();
    }
}

enum StepError {
    /// Another writer moved the saga on: reload and continue from what is stored.
    Conflict,
    /// The step failed; the message starts with a stable code (docs/errors/).
    Failed(String),
}

fn error_code(cmd: &Command) -> &'static str {
    match cmd {
        Command::ReserveStock { .. } => "SAGA-STOCK-001",
        Command::ReleaseStock { .. } => "SAGA-STOCK-003",
        Command::WriteOrder { .. } => "SAGA-ORDER-001",
        Command::CloseOrder { .. } => "SAGA-ORDER-002",
        Command::RecordPayment { .. } => "SAGA-PAY-001",
        Command::AwardPoints { .. } => "SAGA-POINTS-001",
        Command::RevokePoints { .. } => "SAGA-POINTS-002",
        Command::ClearCart { .. } => "SAGA-CART-002",
        Command::EnqueuePayLog { .. } => "SAGA-PAYLOG-001",
        Command::CloseWxOrder { .. } => "SAGA-WX-001",
        Command::ScheduleDeadline { .. }
        | Command::ScheduleRetry { .. }
        | Command::RaiseAlert(_) => "SAGA-INTERNAL-001",
    }
}

/// What a step's effect produced: an event to commit with the effect, or (short of stock)
/// an event to commit after rolling the effect back.
enum Effect {
    Keep(Event),
    RollBack(Event),
}

/// The participant's effect of a step inside `tx`, and the event it produces.
async fn effect(
    tx: &mut StoreTx,
    cmd: &Command,
    state: &SagaState,
    now: i64,
    first_check_ms: i64,
) -> anyhow::Result<Effect> {
    Ok(Effect::Keep(match cmd {
        Command::ReserveStock { order, lines } => {
            match inventory::reserve(tx, *order, lines).await? {
                inventory::Reservation::Reserved(priced) => Event::StockReserved { priced },
                inventory::Reservation::Short(skus) => {
                    return Ok(Effect::RollBack(Event::StockShort { skus }));
                }
            }
        }
        Command::WriteOrder { .. } => {
            orders::write(tx, state).await?;
            Event::OrderWritten
        }
        Command::AwardPoints {
            order,
            user,
            points,
        } => {
            loyalty::award(tx, *order, user, *points, now).await?;
            Event::PointsAwarded
        }
        Command::ClearCart { .. } => Event::CartCleared,
        Command::EnqueuePayLog { order, amount } => {
            let first_check = now + first_check_ms;
            pay_log::enqueue(
                tx,
                *order,
                &state.request.username,
                *amount,
                now,
                first_check,
            )
            .await?;
            Event::PayLogEnqueued
        }
        Command::RecordPayment { order, payment } => {
            orders::mark_paid(tx, *order, payment, now).await?;
            inventory::commit(tx, *order).await?;
            pay_log::remove(tx, *order).await?;
            Event::PaymentRecorded
        }
        Command::RevokePoints { order } => {
            loyalty::revoke(tx, *order, now).await?;
            Event::PointsRevoked
        }
        Command::CloseOrder { order } => {
            orders::close(tx, *order, now).await?;
            pay_log::remove(tx, *order).await?;
            Event::OrderClosed
        }
        Command::ReleaseStock { order } => {
            inventory::release(tx, *order).await?;
            Event::StockReleased
        }
        // A remote call: `close_wx` runs it outside any transaction.
        Command::CloseWxOrder { .. }
        | Command::ScheduleDeadline { .. }
        | Command::ScheduleRetry { .. }
        | Command::RaiseAlert(_) => {
            anyhow::bail!("not a local step command: {cmd:?}")
        }
    }))
}
