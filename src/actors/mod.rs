//! ractor actors: `SagaSupervisor` (spawns, finds, recovers and passivates saga actors),
//! `OrderSaga` (one per active order: executes the workflow's commands and journals every
//! transition), `PayReconciler` (asks WeChat about pay logs whose notification never came).

mod order_saga;
pub mod reconciler;
mod supervisor;

use std::sync::Arc;
use std::time::Duration;

pub use order_saga::{NativeError, NativeInfo, OrderSaga, SagaMsg};
pub use supervisor::{SagaSupervisor, SagaView, Sagas, SupervisorMsg};

use crate::cart::Cart;
use crate::clock::Clock;
use crate::store::Db;
use crate::wxpay::PaymentGateway;

/// What saga actors need: the store, the cart, the clock and their timing settings.
pub struct SagaDeps {
    pub db: Db,
    pub cart: Arc<dyn Cart>,
    /// WeChat Pay (or its simulator): Native orders and closing them.
    pub gateway: Arc<dyn PaymentGateway>,
    pub clock: Arc<dyn Clock>,
    /// A saga that only waits for payment leaves memory after this long without events.
    pub passivate_after: Duration,
    /// How often the supervisor looks for expired deadlines of passivated sagas.
    pub sweep_interval: Duration,
    /// Delay before a new pay log's first check by the reconciler.
    pub first_check_ms: i64,
}

impl SagaDeps {
    pub fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}
