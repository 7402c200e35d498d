//! The transitions. Every (phase, event) pair is handled explicitly; a no-op says why.

use super::compensate;
use super::{
    Alert, Command, CompStep, Decision, EndReason, Event, Outcome, Payment, Phase, SagaState,
    WxOrder, pending_command,
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
            d.take_payment(payment);
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
        // Closing the WeChat order found it paid (ORDERPAID): the payment wins over the
        // cancel or deadline. With the wrong amount it can be neither closed nor kept:
        // refund needed, and the undo goes on.
        (
            Phase::Compensating(CompStep::CloseWxOrder) | Phase::Stuck(CompStep::CloseWxOrder),
            Event::WxOrderPaid { payment },
        ) => {
            if !d.take_payment(payment) {
                // The alert is raised and the undo moves on: the state changed.
                d.outcome = Outcome::Applied;
                d.compensated(CompStep::CloseWxOrder);
            }
        }
        // A notification (or an operator) while the close is pending: nothing was given
        // back yet, so a right payment still completes the order. A wrong one is only an
        // alert: the close step still has to learn WeChat's own view.
        (
            Phase::Compensating(CompStep::CloseWxOrder) | Phase::Stuck(CompStep::CloseWxOrder),
            Event::PaymentConfirmed { payment },
        ) => {
            d.take_payment(payment);
        }
        (_, Event::WxOrderPaid { payment }) => match state.phase {
            // Not closing: a stale result. A payment WeChat reports is never dropped silently.
            Phase::Paying | Phase::Completed
                if state
                    .payment
                    .as_ref()
                    .is_some_and(|p| p.transaction_id == payment.transaction_id) =>
            {
                d.ignore("the payment is already recorded")
            }
            Phase::Started
            | Phase::StockReserved
            | Phase::OrderWritten
            | Phase::PointsAwarded
            | Phase::CartCleared
            | Phase::AwaitingPayment
            | Phase::Paying
            | Phase::Compensating(_)
            | Phase::Stuck(_)
            | Phase::Completed
            | Phase::Compensated
            | Phase::Failed => d.alert(Alert::PaidAfterClose {
                order: state.request.order_id,
                payment: payment.clone(),
            }),
        },
        (
            Phase::Compensating(_) | Phase::Stuck(_) | Phase::Compensated | Phase::Failed,
            Event::PaymentConfirmed { payment },
        ) => d.alert(Alert::PaidAfterClose {
            order: state.request.order_id,
            payment: payment.clone(),
        }),

        // ---- the WeChat order -------------------------------------------------------------
        (Phase::AwaitingPayment, Event::WxOrderRequested { at_ms }) => {
            if state.wx.is_some() {
                d.ignore("the WeChat order was already requested");
            } else {
                d.next.wx = Some(WxOrder {
                    requested_at_ms: *at_ms,
                    created_at_ms: None,
                    prepay_id: None,
                    code_url: None,
                });
            }
        }
        (_, Event::WxOrderRequested { .. }) => d.ignore("the saga is not waiting for payment"),
        // Recorded in any phase: it tells the pay page the QR code, and compensation already
        // knows from the request that the order must be closed.
        (
            _,
            Event::WxOrderCreated {
                prepay_id,
                code_url,
            },
        ) => match &state.wx {
            Some(wx) if wx.code_url.is_none() => {
                d.next.wx = Some(WxOrder {
                    requested_at_ms: wx.requested_at_ms,
                    created_at_ms: Some(now_ms),
                    prepay_id: Some(prepay_id.clone()),
                    code_url: Some(code_url.clone()),
                });
            }
            Some(_) | None => {
                d.ignore("the WeChat order is already recorded, or was never requested")
            }
        },
        (Phase::Compensating(CompStep::CloseWxOrder), Event::WxOrderClosed) => {
            d.compensated(CompStep::CloseWxOrder)
        }
        (_, Event::WxOrderClosed) => d.ignore("not closing a WeChat order"),

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
            d.commands.push(compensate::command(step, state));
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

    /// Accepts a payment of the order's amount (recording it wins over any cancel or
    /// deadline still being undone); any other amount is only a `WrongAmount` alert.
    /// Returns whether it was accepted.
    fn take_payment(&mut self, payment: &Payment) -> bool {
        let expected = self.next.pay_money().unwrap_or_default();
        if payment.amount == expected {
            self.next.end_reason = None;
            self.pay(payment);
            true
        } else {
            let order = self.next.request.order_id;
            self.alert(Alert::WrongAmount {
                order,
                expected,
                payment: payment.clone(),
            });
            false
        }
    }

    /// The payment is accepted: record it.
    fn pay(&mut self, payment: &Payment) {
        self.next.payment = Some(payment.clone());
        self.next.reached = Phase::Paying;
        self.next.phase = Phase::Paying;
        self.next.attempts = 0;
        self.next.last_error = None;
        self.commands.push(Command::RecordPayment {
            order: self.next.request.order_id,
            payment: payment.clone(),
        });
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
        match compensate::first(&self.next) {
            Some(step) => {
                self.next.phase = Phase::Compensating(step);
                self.commands.push(compensate::command(step, &self.next));
            }
            None => self.next.phase = Phase::Failed,
        }
        self.flush_deferred_payments();
    }

    fn compensated(&mut self, done: CompStep) {
        self.next.attempts = 0;
        self.next.last_error = None;
        match compensate::after(done, &self.next) {
            Some(step) => {
                self.next.phase = Phase::Compensating(step);
                self.commands.push(compensate::command(step, &self.next));
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
