//! The checkout saga of one order, as data.
//!
//! Forward steps, each done exactly once: reserve stock (all lines or none), write the
//! order, award points, clear the ordered cart lines, enqueue the pay log, then wait for
//! payment until the deadline. Payment records the order as paid and commits the stock.
//! Cancel, deadline, payment failure or a forward step that keeps failing run the
//! compensations in reverse: revoke points, close the order (which also drops its pay log),
//! release stock. A compensation that keeps failing leaves the saga `Stuck` until an
//! operator retries it.
//!
//! ```text
//!  Started ──StockReserved──▶ StockReserved ──OrderWritten──▶ OrderWritten ──PointsAwarded──▶
//!    │ StockShort/EmptyCart                                       PointsAwarded ──CartCleared──▶
//!    ▼                                                            CartCleared ──PayLogEnqueued──▶
//!  Failed                                                         AwaitingPayment
//!                                       PaymentConfirmed (amount ok) │   │ Cancel / Deadline / PaymentFailed
//!                                                                    ▼   ▼
//!                                        Paying ──PaymentRecorded──▶ Completed
//!                     Compensating(RevokePoints → CloseOrder → ReleaseStock) ──▶ Compensated
//!                          │ a step fails MAX_COMPENSATION_ATTEMPTS times      ▲
//!                          ▼                                                   │
//!                        Stuck(step) ──────────RetryRequested───────────────────┘
//! ```

mod compensate;
mod decide;

use serde::{Deserialize, Serialize};

pub use decide::{MAX_COMPENSATION_ATTEMPTS, MAX_FORWARD_ATTEMPTS, backoff_ms, decide};

use crate::domain::{Money, OrderId, SkuId};

/// What the shopper asked for when submitting the checkout page. Fixed for the saga's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    pub order_id: OrderId,
    pub username: String,
    /// The cart lines being ordered (SKU and units), in SKU id order, each SKU once.
    pub lines: Vec<RequestedLine>,
    pub receiver_contact: String,
    pub receiver_mobile: String,
    pub receiver_address: String,
    pub pay_type: String,
    pub buyer_message: String,
    /// Points awarded with the order (and revoked if it is undone).
    pub points: i64,
    pub created_at_ms: i64,
    /// When the shopper's payment window closes.
    pub deadline_at_ms: i64,
    /// WeChat refuses to close an order younger than this (5 minutes); fixed at checkout
    /// so that replaying the journal decides the same way.
    #[serde(default)]
    pub wx_min_close_ms: i64,
}

/// The WeChat Native order behind a saga: created on the shopper's first visit to the pay
/// page, journaled as intent (`requested_at_ms`) before `unifiedorder` is called, so a
/// crash in between still leaves a record that compensation must close it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxOrder {
    pub requested_at_ms: i64,
    /// When unifiedorder answered: WeChat's minimum close interval counts from here (a
    /// re-entry after a crash can come long after the intent).
    #[serde(default)]
    pub created_at_ms: Option<i64>,
    pub prepay_id: Option<String>,
    pub code_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedLine {
    pub sku_id: SkuId,
    pub num: i32,
}

/// The order as priced at reservation, from `tb_sku`: what the shopper must pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedOrder {
    pub lines: Vec<PricedLine>,
    pub total_num: i64,
    pub pay_money: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku_id: SkuId,
    pub name: String,
    pub image: String,
    pub price: Money,
    pub num: i32,
    pub spu_id: i64,
}

impl PricedOrder {
    pub fn from_lines(lines: Vec<PricedLine>) -> PricedOrder {
        let total_num = lines.iter().map(|l| i64::from(l.num)).sum();
        let pay_money =
            Money::from_fen(lines.iter().map(|l| l.price.fen() * i64::from(l.num)).sum());
        PricedOrder {
            lines,
            total_num,
            pay_money,
        }
    }
}

/// A payment as WeChat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub transaction_id: String,
    pub amount: Money,
    pub paid_at_ms: i64,
}

/// Who asked for a cancel or retry: journaled, shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Requester {
    Shopper(String),
    Operator(String),
}

/// Where the saga is. Each non-terminal, non-waiting phase has exactly one pending
/// command (see [`pending_command`]); the phase changes when its result comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", content = "step", rename_all = "snake_case")]
pub enum Phase {
    Started,
    StockReserved,
    OrderWritten,
    PointsAwarded,
    CartCleared,
    AwaitingPayment,
    Paying,
    Compensating(CompStep),
    Stuck(CompStep),
    Completed,
    Compensated,
    Failed,
}

/// The compensations, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompStep {
    /// Close the WeChat order (and confirm it with orderquery) before anything is given
    /// back: a payment landing now must not find a released order.
    CloseWxOrder,
    RevokePoints,
    CloseOrder,
    ReleaseStock,
}

/// Every name [`Phase::name`] can return: the values of `saga.state`.
pub const PHASE_NAMES: [&str; 12] = [
    "started",
    "stock_reserved",
    "order_written",
    "points_awarded",
    "cart_cleared",
    "awaiting_payment",
    "paying",
    "compensating",
    "stuck",
    "completed",
    "compensated",
    "failed",
];

impl Phase {
    /// The name stored in `saga.state` and shown to operators (one of [`PHASE_NAMES`]).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Started => "started",
            Phase::StockReserved => "stock_reserved",
            Phase::OrderWritten => "order_written",
            Phase::PointsAwarded => "points_awarded",
            Phase::CartCleared => "cart_cleared",
            Phase::AwaitingPayment => "awaiting_payment",
            Phase::Paying => "paying",
            Phase::Compensating(_) => "compensating",
            Phase::Stuck(_) => "stuck",
            Phase::Completed => "completed",
            Phase::Compensated => "compensated",
            Phase::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        match self {
            Phase::Completed | Phase::Compensated | Phase::Failed => true,
            Phase::Started
            | Phase::StockReserved
            | Phase::OrderWritten
            | Phase::PointsAwarded
            | Phase::CartCleared
            | Phase::AwaitingPayment
            | Phase::Paying
            | Phase::Compensating(_)
            | Phase::Stuck(_) => false,
        }
    }

    /// Forward phases: steps are still being taken, nothing waits for the outside yet.
    pub fn is_forward(self) -> bool {
        matches!(
            self,
            Phase::Started
                | Phase::StockReserved
                | Phase::OrderWritten
                | Phase::PointsAwarded
                | Phase::CartCleared
        )
    }
}

/// Why a saga is being (or was) undone or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndReason {
    OutOfStock { skus: Vec<SkuId> },
    EmptyCheckout,
    Cancelled { by: Requester },
    Expired,
    PaymentFailed { reason: String },
    StepFailed { step: String, error: String },
}

/// The whole state of one saga: stored as JSON in `saga.data`, one version per transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaState {
    pub phase: Phase,
    pub request: CheckoutRequest,
    /// Set by the stock reservation.
    pub priced: Option<PricedOrder>,
    /// The furthest forward phase reached: it decides which compensations are needed.
    pub reached: Phase,
    pub payment: Option<Payment>,
    /// The WeChat order, once the shopper asked for the QR code.
    #[serde(default)]
    pub wx: Option<WxOrder>,
    pub end_reason: Option<EndReason>,
    /// Failed attempts of the pending command, reset when the phase changes.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Events from outside (payment, cancel, ...) that arrived while forward steps were
    /// still running; applied as soon as the saga waits for payment.
    pub deferred: Vec<Event>,
}

impl SagaState {
    pub fn new(request: CheckoutRequest) -> SagaState {
        SagaState {
            phase: Phase::Started,
            request,
            priced: None,
            reached: Phase::Started,
            payment: None,
            wx: None,
            end_reason: None,
            attempts: 0,
            last_error: None,
            deferred: Vec::new(),
        }
    }

    pub fn deadline_at_ms(&self) -> i64 {
        self.request.deadline_at_ms
    }

    pub fn pay_money(&self) -> Option<Money> {
        self.priced.as_ref().map(|p| p.pay_money)
    }
}

/// What happens to a saga. Results of its own commands, and events from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    StockReserved {
        priced: PricedOrder,
    },
    StockShort {
        skus: Vec<SkuId>,
    },
    OrderWritten,
    PointsAwarded,
    CartCleared,
    PayLogEnqueued,
    PaymentRecorded,
    PointsRevoked,
    OrderClosed,
    StockReleased,
    /// The pending command failed; `error` carries a stable code and a message.
    StepFailed {
        error: String,
    },
    /// The pending command's retry time has come.
    RetryDue,
    PaymentConfirmed {
        payment: Payment,
    },
    PaymentFailed {
        reason: String,
    },
    CancelRequested {
        by: Requester,
    },
    DeadlineReached,
    RetryRequested {
        by: Requester,
    },
    /// Intent, journaled before `unifiedorder` is called.
    WxOrderRequested {
        at_ms: i64,
    },
    WxOrderCreated {
        prepay_id: String,
        code_url: String,
    },
    /// WeChat confirmed the order is closed (or never existed): nothing can be paid now.
    WxOrderClosed,
    /// Closing found the WeChat order paid (ORDERPAID, then orderquery SUCCESS): this is
    /// WeChat's own account of the order, unlike a notification that may be stale.
    WxOrderPaid {
        payment: Payment,
    },
}

impl Event {
    /// The name journaled in `saga_event.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::StockReserved { .. } => "stock_reserved",
            Event::StockShort { .. } => "stock_short",
            Event::OrderWritten => "order_written",
            Event::PointsAwarded => "points_awarded",
            Event::CartCleared => "cart_cleared",
            Event::PayLogEnqueued => "pay_log_enqueued",
            Event::PaymentRecorded => "payment_recorded",
            Event::PointsRevoked => "points_revoked",
            Event::OrderClosed => "order_closed",
            Event::StockReleased => "stock_released",
            Event::StepFailed { .. } => "step_failed",
            Event::RetryDue => "retry_due",
            Event::PaymentConfirmed { .. } => "payment_confirmed",
            Event::PaymentFailed { .. } => "payment_failed",
            Event::CancelRequested { .. } => "cancel_requested",
            Event::DeadlineReached => "deadline_reached",
            Event::RetryRequested { .. } => "retry_requested",
            Event::WxOrderRequested { .. } => "wx_order_requested",
            Event::WxOrderCreated { .. } => "wx_order_created",
            Event::WxOrderClosed => "wx_order_closed",
            Event::WxOrderPaid { .. } => "wx_order_paid",
        }
    }
}

/// Effects, as data: the actor executes them through the ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ReserveStock {
        order: OrderId,
        lines: Vec<RequestedLine>,
    },
    WriteOrder {
        order: OrderId,
    },
    AwardPoints {
        order: OrderId,
        user: String,
        points: i64,
    },
    ClearCart {
        user: String,
        skus: Vec<SkuId>,
    },
    EnqueuePayLog {
        order: OrderId,
        amount: Money,
    },
    /// Mark the order paid, commit its reservations, drop its pay log.
    RecordPayment {
        order: OrderId,
        payment: Payment,
    },
    RevokePoints {
        order: OrderId,
    },
    /// Close the order (close time set) and drop its pay log.
    CloseOrder {
        order: OrderId,
    },
    /// Close the WeChat order, not before `not_before_ms` (WeChat's minimum interval after
    /// unifiedorder), and confirm it with orderquery.
    CloseWxOrder {
        order: OrderId,
        not_before_ms: i64,
    },
    ReleaseStock {
        order: OrderId,
    },
    ScheduleDeadline {
        at_ms: i64,
    },
    /// Run the pending command again at `at_ms`.
    ScheduleRetry {
        at_ms: i64,
    },
    RaiseAlert(Alert),
}

/// Something operators must look at: money arrived that the saga cannot keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// A payment whose amount differs from the order's pay_money: never completes the order.
    WrongAmount {
        order: OrderId,
        expected: Money,
        payment: Payment,
    },
    /// A payment for an order that was already closed or is being undone: refund needed.
    PaidAfterClose { order: OrderId, payment: Payment },
    /// A second, different payment for an already paid order: refund needed.
    DuplicatePayment { order: OrderId, payment: Payment },
    /// Compensation failed repeatedly: the saga is stuck until retried.
    Stuck {
        order: OrderId,
        step: CompStep,
        error: String,
    },
}

impl Alert {
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::WrongAmount { .. } => "wrong_amount",
            Alert::PaidAfterClose { .. } => "paid_after_close",
            Alert::DuplicatePayment { .. } => "duplicate_payment",
            Alert::Stuck { .. } => "stuck",
        }
    }
}

/// How `decide` treated an event, for callers that wait on it (HTTP cancel, notify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Nothing changed; the reason says why (duplicate, too late, not applicable).
    Ignored(&'static str),
    /// Recorded as an operator alert; the saga's state did not change.
    Alerted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub next: SagaState,
    pub commands: Vec<Command>,
    pub outcome: Outcome,
}

/// The command the saga must run in its current phase, if any: what a recovered saga
/// resumes with.
pub fn pending_command(state: &SagaState) -> Option<Command> {
    let order = state.request.order_id;
    match state.phase {
        Phase::Started => Some(Command::ReserveStock {
            order,
            lines: state.request.lines.clone(),
        }),
        Phase::StockReserved => Some(Command::WriteOrder { order }),
        Phase::OrderWritten => Some(Command::AwardPoints {
            order,
            user: state.request.username.clone(),
            points: state.request.points,
        }),
        Phase::PointsAwarded => Some(Command::ClearCart {
            user: state.request.username.clone(),
            skus: state.request.lines.iter().map(|l| l.sku_id).collect(),
        }),
        Phase::CartCleared => Some(Command::EnqueuePayLog {
            order,
            amount: state.pay_money().unwrap_or_default(),
        }),
        Phase::Paying => state
            .payment
            .clone()
            .map(|payment| Command::RecordPayment { order, payment }),
        Phase::Compensating(step) => Some(compensate::command(step, state)),
        Phase::AwaitingPayment => Some(Command::ScheduleDeadline {
            at_ms: state.deadline_at_ms(),
        }),
        Phase::Stuck(_) | Phase::Completed | Phase::Compensated | Phase::Failed => None,
    }
}

#[cfg(test)]
mod tests;
