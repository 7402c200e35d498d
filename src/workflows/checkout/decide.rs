//! The transitions. Every (phase, event) pair is handled explicitly; a no-op says why.

use super::compensate;
use super::{
    Alert, Command, CompStep, Decision, EndReason, Event, Outcome, Phase, SagaState,
    pending_command,
};

/// A forward step that fails this many times in a row undoes the saga.
pub const MAX_FORWARD_ATTEMPTS: u32 = 3;
/// A compensation that fails this many times in a row leaves the saga stuck.
pub const MAX_COMPENSATION_ATTEMPTS: u32 = 6;

/// Delay before attempt `attempts + 1`: 200 ms doubling, at most 30 s.
pub fn backoff_ms(attempts: u32) -> i64 {
    (200_i64 << attempts.min(8)).min(30_000)
}

/// The next state and the commands to run, for `event` arriving in `state` at `now_ms`.
pub fn decide(state: &SagaState, event: &Event, now_ms: i64) -> Decision {
    let mut d = Step::new(state);
    match (state.phase, event) {
        // ---- forward steps -------------------------------------------------------------
        (Phase::Started, Event::StockReserved { priced }) => {
            d.next.priced = Some(priced.clone());
            if priced.lines.is_empty() {
                d.fail(EndReason::EmptyCheckout);
            } else {
                d.advance(Phase::StockReserved);
            }
        }
        (Phase::Started, Event::StockShort { skus }) => {
            d.fail(EndReason::OutOfStock { skus: skus.clone() })
        }
        (Phase::StockReserved, Event::OrderWritten) => d.advance(Phase::OrderWritten),
        (Phase::OrderWritten, Event::PointsAwarded) => d.advance(Phase::PointsAwarded),
        (Phase::PointsAwarded, Event::CartCleared) => d.advance(Phase::CartCleared),
        (Phase::CartCleared, Event::PayLogEnqueued) => {
            d.advance(Phase::AwaitingPayment);
            // What arrived while the forward steps ran applies now, in arrival order.
            let deferred = std::mem::take(&mut d.next.deferred);
            for e in deferred {
                d.chain(&e, now_ms);
            }
        }

        // ---- a command failed, or its retry is due ----------------------------------
        (
            phase @ (Phase::Started
            | Phase::StockReserved
            | Phase::OrderWritten
            | Phase::PointsAwarded
            | Phase::CartCleared
            | Phase::Paying),
            Event::StepFailed { error },
        ) => {
            d.next.attempts += 1;
            d.next.last_error = Some(error.clone());
            if d.next.attempts < MAX_FORWARD_ATTEMPTS || phase == Phase::Paying {
                // Recording a payment that WeChat confirmed must not give up: the money
                // is taken. It retries with backoff until it succeeds.
                d.commands.push(Command::ScheduleRetry {
                    at_ms: now_ms + backoff_ms(d.next.attempts),
                });
            } else {
                let reason = EndReason::StepFailed {
                    step: phase.name().to_owned(),
                    error: error.clone(),
                };
                d.undo(reason);
            }
        }
        (Phase::Compensating(step), Event::StepFailed { error }) => {
            d.next.attempts += 1;
            d.next.last_error = Some(error.clone());
            if d.next.attempts < MAX_COMPENSATION_ATTEMPTS {
                d.commands.push(Command::ScheduleRetry {
                    at_ms: now_ms + backoff_ms(d.next.attempts),
                });
            } else {
                d.next.phase = Phase::Stuck(step);
                d.commands.push(Command::RaiseAlert(Alert::Stuck {
                    order: state.request.order_id,
                    step,
                    error: error.clone(),
                }));
            }
        }
        (
            Phase::AwaitingPayment
            | Phase::Stuck(_)
            | Phase::Completed
            | Phase::Compensated
            | Phase::Failed,
            Event::StepFailed { .. },
        ) => d.ignore("no command is pending in this phase"),
        (phase, Event::RetryDue) => match pending_command(state) {
            Some(cmd) if phase != Phase::AwaitingPayment => d.commands.push(cmd),
            _ => d.ignore("no command is pending in this phase"),
        },

        // ---- waiting for payment ------------------------------------------------------
        (Phase::AwaitingPayment, Event::PaymentConfirmed { payment }) => {
            let expected = state.pay_money().unwrap_or_default();
            if payment.amount == expected {
                d.next.payment = Some(payment.clone());
                d.next.reached = Phase::Paying;
                d.next.phase = Phase::Paying;
                d.next.attempts = 0;
                d.commands.push(Command::RecordPayment {
                    order: state.request.order_id,
                    payment: payment.clone(),
                });
            } else {
                d.alert(Alert::WrongAmount {
                    order: state.request.order_id,
                    expected,
                    payment: payment.clone(),
                });
            }
        }
        (Phase::AwaitingPayment, Event::CancelRequested { by }) => {
            d.undo(EndReason::Cancelled { by: by.clone() })
        }
        (Phase::AwaitingPayment, Event::PaymentFailed { reason }) => {
            d.undo(EndReason::PaymentFailed {
                reason: reason.clone(),
            })
        }
        (Phase::AwaitingPayment, Event::DeadlineReached) => {
            if now_ms >= state.deadline_at_ms() {
                d.undo(EndReason::Expired);
            } else {
                // A timer that fired early (clock skew): wait for the real deadline.
                d.ignore("the deadline has not passed yet");
                d.commands.push(Command::ScheduleDeadline {
                    at_ms: state.deadline_at_ms(),
                });
            }
        }
        (Phase::Paying, Event::PaymentRecorded) => {
            d.next.phase = Phase::Completed;
            d.next.attempts = 0;
            d.next.last_error = None;
        }

        // ---- outside events during the forward steps: kept for later --------------------
        (
            Phase::Started
            | Phase::StockReserved
            | Phase::OrderWritten
            | Phase::PointsAwarded
            | Phase::CartCleared,
            Event::PaymentConfirmed { .. }
            | Event::PaymentFailed { .. }
            | Event::CancelRequested { .. }
            | Event::DeadlineReached,
        ) => {
            if !state.deferred.contains(event) {
                d.next.deferred.push(event.clone());
            }
        }

        // ---- payments that cannot complete the saga ------------------------------------
        (Phase::Paying | Phase::Completed, Event::PaymentConfirmed { payment }) => {
            if state
                .payment
                .as_ref()
                .is_some_and(|p| p.transaction_id == payment.transaction_id)
            {
                d.ignore("duplicate notification of the payment already recorded");
            } else {
                d.alert(Alert::DuplicatePayment {
                    order: state.request.order_id,
                    payment: payment.clone(),
                });
            }
        }
        (
            Phase::Compensating(_) | Phase::Stuck(_) | Phase::Compensated | Phase::Failed,
            Event::PaymentConfirmed { payment },
        ) => d.alert(Alert::PaidAfterClose {
            order: state.request.order_id,
            payment: payment.clone(),
        }),

        // ---- compensations ---------------------------------------------------------------
        (Phase::Compensating(CompStep::RevokePoints), Event::PointsRevoked) => {
            d.compensated(CompStep::RevokePoints)
        }
        (Phase::Compensating(CompStep::CloseOrder), Event::OrderClosed) => {
            d.compensated(CompStep::CloseOrder)
        }
        (Phase::Compensating(CompStep::ReleaseStock), Event::StockReleased) => {
            d.compensated(CompStep::ReleaseStock)
        }
        (Phase::Stuck(step), Event::RetryRequested { .. }) => {
            d.next.phase = Phase::Compensating(step);
            d.next.attempts = 0;
            d.commands
                .push(compensate::command(step, state.request.order_id));
        }

        // ---- everything else changes nothing ----------------------------------------------
        (_, Event::RetryRequested { .. }) => d.ignore("only a stuck saga can be retried"),
        (Phase::Paying | Phase::Completed, Event::CancelRequested { .. }) => {
            d.ignore("the order is already paid")
        }
        (
            Phase::Compensating(_) | Phase::Stuck(_) | Phase::Compensated | Phase::Failed,
            Event::CancelRequested { .. } | Event::PaymentFailed { .. },
        ) => d.ignore("the order is already being undone or is closed"),
        (Phase::Paying | Phase::Completed, Event::PaymentFailed { .. }) => {
            d.ignore("the order is already paid")
        }
        (_, Event::DeadlineReached) => d.ignore("the saga is not waiting for payment"),
        (
            _,
            Event::StockReserved { .. }
            | Event::StockShort { .. }
            | Event::OrderWritten
            | Event::PointsAwarded
            | Event::CartCleared
            | Event::PayLogEnqueued
            | Event::PaymentRecorded
            | Event::PointsRevoked
            | Event::OrderClosed
            | Event::StockReleased,
        ) => {
            d.ignore("a step result that does not belong to the current phase (stale or repeated)")
        }
    }
    d.finish()
}

/// A decision under construction.
struct Step {
    next: SagaState,
    commands: Vec<Command>,
    outcome: Outcome,
}

impl Step {
    fn new(state: &SagaState) -> Step {
        Step {
            next: state.clone(),
            commands: Vec::new(),
            outcome: Outcome::Applied,
        }
    }

    fn finish(self) -> Decision {
        Decision {
            next: self.next,
            commands: self.commands,
            outcome: self.outcome,
        }
    }

    fn ignore(&mut self, why: &'static str) {
        self.outcome = Outcome::Ignored(why);
    }

    fn alert(&mut self, alert: Alert) {
        self.outcome = Outcome::Alerted;
        self.commands.push(Command::RaiseAlert(alert));
    }

    /// A forward step is done: move on and run the next one.
    fn advance(&mut self, phase: Phase) {
        self.next.phase = phase;
        self.next.reached = phase;
        self.next.attempts = 0;
        self.next.last_error = None;
        self.commands.extend(pending_command(&self.next));
    }

    /// Refused before anything was taken.
    fn fail(&mut self, reason: EndReason) {
        self.next.phase = Phase::Failed;
        self.next.end_reason = Some(reason);
        self.flush_deferred_payments();
    }

    /// Start undoing what was done.
    fn undo(&mut self, reason: EndReason) {
        self.next.end_reason = Some(reason);
        self.next.attempts = 0;
        match compensate::first(self.next.reached) {
            Some(step) => {
                self.next.phase = Phase::Compensating(step);
                self.commands
                    .push(compensate::command(step, self.next.request.order_id));
            }
            None => self.next.phase = Phase::Failed,
        }
        self.flush_deferred_payments();
    }

    fn compensated(&mut self, done: CompStep) {
        self.next.attempts = 0;
        self.next.last_error = None;
        match compensate::after(done, self.next.reached) {
            Some(step) => {
                self.next.phase = Phase::Compensating(step);
                self.commands
                    .push(compensate::command(step, self.next.request.order_id));
            }
            None => self.next.phase = Phase::Compensated,
        }
    }

    /// A payment that arrived during the forward steps of a saga that is now undone.
    fn flush_deferred_payments(&mut self) {
        for e in std::mem::take(&mut self.next.deferred) {
            if let Event::PaymentConfirmed { payment } = e {
                self.commands
                    .push(Command::RaiseAlert(Alert::PaidAfterClose {
                        order: self.next.request.order_id,
                        payment,
                    }));
            }
        }
    }

    /// Applies another event on top of this decision (deferred events). A chained event
    /// that moves the saga to another phase supersedes the earlier step commands (alerts
    /// always stand); one that is ignored or only alerts leaves them in place.
    fn chain(&mut self, event: &Event, now_ms: i64) {
        let more = decide(&self.next, event, now_ms);
        if more.next.phase != self.next.phase {
            self.commands
                .retain(|c| matches!(c, Command::RaiseAlert(_)));
        }
        self.next = more.next;
        self.commands.extend(more.commands);
    }
}
