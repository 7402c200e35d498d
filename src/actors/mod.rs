//! ractor actors: `SagaSupervisor` (spawns, finds, recovers and passivates saga actors),
//! `OrderSaga` (one per active order: executes the workflow's commands and journals every
//! transition).

mod order_saga;
mod supervisor;

use std::sync::Arc;
use std::time::Duration;

pub use order_saga::{OrderSaga, SagaMsg};
pub use supervisor::{SagaSupervisor, SagaView, Sagas, SupervisorMsg};

use crate::cart::Cart;
use crate::clock::Clock;
use crate::store::Db;

/// What saga actors need: the store, the cart, the clock and their timing settings.
pub struct SagaDeps {
    pub db: Db,
    pub cart: Arc<dyn Cart>,
    pub clock: Arc<dyn Clock>,
    /// A saga that only waits for payment leaves memory after this long without events.
    pub passivate_after: Duration,
    /// How often the supervisor looks for expired deadlines of passivated sagas.
    pub sweep_interval: Duration,
}

impl SagaDeps {
    pub fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}
