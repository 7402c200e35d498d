//! `SagaSupervisor`: owns the map from order id to its `OrderSaga` actor. It spawns an actor
//! when a saga starts or when an event comes for a saga not in memory, recovers the sagas
//! that were mid-step when the process stopped, passivates idle ones, and sweeps for
//! deadlines of passivated sagas.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;

use super::SagaDeps;
use super::order_saga::{NativeError, NativeInfo, OrderSaga, OrderSagaArgs, SagaMsg};
use crate::domain::OrderId;
use crate::workflows::checkout::{Event, Outcome, SagaState};

pub struct SagaSupervisor;

/// What a watcher sees of a saga: its state after the latest committed transition.
#[derive(Clone, Debug, Default)]
pub struct SagaView {
    pub state: Option<Arc<SagaState>>,
    pub version: i64,
}

pub enum SupervisorMsg {
    /// Make sure the saga's actor runs (it resumes from the database) and watch it.
    Activate {
        order: OrderId,
        reply: Option<RpcReplyPort<watch::Receiver<SagaView>>>,
    },
    /// Deliver an external event, activating the saga if needed.
    Deliver {
        order: OrderId,
        event: Event,
        reply: Option<RpcReplyPort<Outcome>>,
    },
    /// The pay page asks for the saga's WeChat Native order.
    Native {
        order: OrderId,
        reply: RpcReplyPort<Result<NativeInfo, NativeError>>,
    },
    /// The saga's actor is idle or finished: drain and forget it.
    Passivate { order: OrderId, actor: ActorId },
    /// Look for sagas whose payment deadline passed while they were out of memory.
    Sweep,
    /// The sweep's query finished; the next tick may start another.
    SweepDone,
    /// How many saga actors are in memory (tests, metrics).
    ActiveCount(RpcReplyPort<usize>),
}

struct Active {
    actor: ActorRef<SagaMsg>,
    view: Arc<watch::Sender<SagaView>>,
}

pub struct SupervisorState {
    deps: Arc<SagaDeps>,
    active: HashMap<OrderId, Active>,
    by_actor: HashMap<ActorId, OrderId>,
    /// `send_interval` task ticking Sweep; aborted in post_stop.
    sweep_timer: Option<tokio::task::JoinHandle<()>>,
    /// A sweep is in flight: ticks while it runs are dropped, so sweeps never overlap.
    sweeping: bool,
}

impl Actor for SagaSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<SagaDeps>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        deps: Arc<SagaDeps>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            deps,
            active: HashMap::new(),
            by_actor: HashMap::new(),
            sweep_timer: None,
            sweeping: false,
        })
    }

    /// Recovery: every saga that was mid-step resumes. Sagas waiting for payment stay on
    /// disk until an event or their deadline (found by the sweep) brings them back.
    async fn post_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let recovering = st.deps.db.active_saga_ids().await?;
        if !recovering.is_empty() {
            tracing::info!(
                count = recovering.len(),
                "resuming sagas interrupted mid-step"
            );
        }
        for order in recovering {
            st.activate(&myself, order).await?;
        }
        st.sweep_timer =
            Some(myself.send_interval(st.deps.sweep_interval, || SupervisorMsg::Sweep));
        myself.cast(SupervisorMsg::Sweep)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Activate { order, reply } => {
                let rx = st.activate(&myself, order).await?;
                if let Some(reply) = reply {
                    let _ = reply.send(rx);
                }
            }
            SupervisorMsg::Deliver {
                order,
                event,
                reply,
            } => {
                st.activate(&myself, order).await?;
                if let Some(active) = st.active.get(&order) {
                    let _ = active.actor.cast(SagaMsg::Event(event, reply));
                }
            }
            SupervisorMsg::Native { order, reply } => {
                st.activate(&myself, order).await?;
                if let Some(active) = st.active.get(&order) {
                    let _ = active.actor.cast(SagaMsg::Native(reply));
                }
            }
            SupervisorMsg::Passivate { order, actor } => {
                if st
                    .active
                    .get(&order)
                    .is_some_and(|a| a.actor.get_id() == actor)
                {
                    let a = st.active.remove(&order).expect("checked above");
                    // drain: messages already queued are still handled, then it stops.
                    let _ = a.actor.drain();
                }
            }
            SupervisorMsg::Sweep => {
                if !st.sweeping {
                    st.sweeping = true;
                    let deps = st.deps.clone();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let now = deps.now_ms();
                        match deps.db.expired_saga_ids(now, 500).await {
                            Ok(ids) => {
                                for order in ids {
                                    let _ = me.cast(SupervisorMsg::Deliver {
                                        order,
                                        event: Event::DeadlineReached,
                                        reply: None,
                                    });
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = ?e, "SAGA-SWEEP-001: deadline sweep failed")
                            }
                        }
                        let _ = me.cast(SupervisorMsg::SweepDone);
                    });
                }
            }
            SupervisorMsg::SweepDone => st.sweeping = false,
            SupervisorMsg::ActiveCount(reply) => {
                let _ = reply.send(st.active.len());
            }
        }
        Ok(())
    }

    /// The default stops the supervisor when a child stops; saga actors stop all the time.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, failure) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell.get_id(), None),
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), Some(err.to_string())),
            _ => return Ok(()),
        };
        if let Some(order) = st.by_actor.remove(&id) {
            if let Some(err) = failure {
                tracing::error!(%order, error = %err, "SAGA-ACTOR-001: saga actor failed; it resumes from the database on its next event");
            }
            if st
                .active
                .get(&order)
                .is_some_and(|a| a.actor.get_id() == id)
            {
                st.active.remove(&order);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.sweep_timer.take() {
            t.abort();
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn activate(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        order: OrderId,
    ) -> Result<watch::Receiver<SagaView>, ActorProcessingErr> {
        if let Some(active) = self.active.get(&order) {
            return Ok(active.view.subscribe());
        }
        let view = Arc::new(watch::channel(SagaView::default()).0);
        let args = OrderSagaArgs {
            order,
            deps: self.deps.clone(),
            supervisor: myself.clone(),
            view: view.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, OrderSaga, args, myself.get_cell()).await?;
        self.by_actor.insert(actor.get_id(), order);
        let rx = view.subscribe();
        self.active.insert(order, Active { actor, view });
        Ok(rx)
    }
}

/// A cloneable handle on the supervisor: async methods instead of messages.
#[derive(Clone)]
pub struct Sagas {
    supervisor: ActorRef<SupervisorMsg>,
}

/// How long a caller waits for the supervisor to answer before giving up.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Sagas {
    /// Starts the supervisor (which resumes interrupted sagas).
    pub async fn start(
        deps: Arc<SagaDeps>,
    ) -> anyhow::Result<(Sagas, tokio::task::JoinHandle<()>)> {
        let (supervisor, handle) = Actor::spawn(None, SagaSupervisor, deps)
            .await
            .map_err(|e| anyhow::anyhow!("starting the saga supervisor: {e}"))?;
        Ok((Sagas { supervisor }, handle))
    }

    /// Activates the saga and returns a watch on its state.
    pub async fn watch(&self, order: OrderId) -> anyhow::Result<watch::Receiver<SagaView>> {
        ractor::call_t!(
            self.supervisor,
            |reply| SupervisorMsg::Activate {
                order,
                reply: Some(reply)
            },
            CALL_TIMEOUT.as_millis() as u64
        )
        .map_err(|e| anyhow::anyhow!("saga supervisor did not answer: {e}"))
    }

    /// Delivers an external event and waits for the workflow's verdict.
    pub async fn deliver(&self, order: OrderId, event: Event) -> anyhow::Result<Outcome> {
        ractor::call_t!(
            self.supervisor,
            |reply| SupervisorMsg::Deliver {
                order,
                event,
                reply: Some(reply)
            },
            CALL_TIMEOUT.as_millis() as u64
        )
        .map_err(|e| anyhow::anyhow!("saga {order} did not answer: {e}"))
    }

    /// The saga's WeChat Native order (created on the first call). Waits for WeChat's
    /// answer, which the client bounds (5 s a call, 3 attempts).
    pub async fn native(&self, order: OrderId) -> anyhow::Result<Result<NativeInfo, NativeError>> {
        ractor::call_t!(
            self.supervisor,
            |reply| SupervisorMsg::Native { order, reply },
            25_000
        )
        .map_err(|e| anyhow::anyhow!("saga {order} did not answer: {e}"))
    }

    pub async fn active_count(&self) -> anyhow::Result<usize> {
        ractor::call_t!(
            self.supervisor,
            SupervisorMsg::ActiveCount,
            CALL_TIMEOUT.as_millis() as u64
        )
        .map_err(|e| anyhow::anyhow!("saga supervisor did not answer: {e}"))
    }

    /// Stops every saga actor and the supervisor. Their state is already on disk.
    pub async fn stop(&self) {
        self.supervisor
            .stop_children_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        let _ = self
            .supervisor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
    }
}
