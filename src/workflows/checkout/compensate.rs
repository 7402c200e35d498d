//! The compensations: which are needed given how far the saga got, and in what order.

use super::{Command, CompStep, Phase, SagaState};

pub(super) fn command(step: CompStep, state: &SagaState) -> Command {
    let order = state.request.order_id;
    match step {
        CompStep::CloseWxOrder => Command::CloseWxOrder {
            order,
            not_before_ms: state
                .wx
                .as_ref()
                .map_or(0, |w| w.created_at_ms.unwrap_or(w.requested_at_ms))
                + state.request.wx_min_close_ms,
        },
        CompStep::RevokePoints => Command::RevokePoints { order },
        CompStep::CloseOrder => Command::CloseOrder { order },
        CompStep::ReleaseStock => Command::ReleaseStock { order },
    }
}

/// Is `step` needed to undo `state`?
fn is_needed(step: CompStep, state: &SagaState) -> bool {
    let depth = forward_depth(state.reached);
    match step {
        CompStep::CloseWxOrder => state.wx.is_some(),
        CompStep::RevokePoints => depth >= forward_depth(Phase::PointsAwarded),
        CompStep::CloseOrder => depth >= forward_depth(Phase::OrderWritten),
        CompStep::ReleaseStock => depth >= forward_depth(Phase::StockReserved),
    }
}

/// How many forward steps are done once `phase` is reached.
fn forward_depth(phase: Phase) -> u8 {
    match phase {
        Phase::Started => 0,
        Phase::StockReserved => 1,
        Phase::OrderWritten => 2,
        Phase::PointsAwarded => 3,
        Phase::CartCleared => 4,
        // Waiting for (or recording) a payment: every forward step is done.
        Phase::AwaitingPayment | Phase::Paying => 5,
        // `reached` only ever holds forward or waiting phases; these never get stored there.
        Phase::Compensating(_)
        | Phase::Stuck(_)
        | Phase::Completed
        | Phase::Compensated
        | Phase::Failed => 0,
    }
}

const ORDER: [CompStep; 4] = [
    CompStep::CloseWxOrder,
    CompStep::RevokePoints,
    CompStep::CloseOrder,
    CompStep::ReleaseStock,
];

/// The first compensation to run for `state`; `None` when nothing was taken, so the saga
/// can fail straight away.
pub(super) fn first(state: &SagaState) -> Option<CompStep> {
    ORDER.into_iter().find(|s| is_needed(*s, state))
}

/// The compensation after `done`; `None` when everything is undone.
pub(super) fn after(done: CompStep, state: &SagaState) -> Option<CompStep> {
    ORDER
        .into_iter()
        .filter(|s| *s > done)
        .find(|s| is_needed(*s, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderId;
    use crate::workflows::checkout::{CheckoutRequest, WxOrder};

    fn reached(phase: Phase, wx: bool) -> SagaState {
        let mut s = SagaState::new(CheckoutRequest {
            order_id: OrderId::new(1).unwrap(),
            username: "u".into(),
            lines: Vec::new(),
            receiver_contact: String::new(),
            receiver_mobile: String::new(),
            receiver_address: String::new(),
            pay_type: "1".into(),
            buyer_message: String::new(),
            points: 10,
            created_at_ms: 0,
            deadline_at_ms: 1,
            wx_min_close_ms: 300_000,
        });
        s.reached = phase;
        s.wx = wx.then_some(WxOrder {
            requested_at_ms: 5,
            created_at_ms: None,
            prepay_id: None,
            code_url: None,
        });
        s
    }

    #[test]
    fn compensations_undo_exactly_what_was_done_in_reverse() {
        assert_eq!(first(&reached(Phase::Started, false)), None);
        assert_eq!(
            first(&reached(Phase::StockReserved, false)),
            Some(CompStep::ReleaseStock)
        );
        assert_eq!(
            first(&reached(Phase::OrderWritten, false)),
            Some(CompStep::CloseOrder)
        );
        let written = reached(Phase::OrderWritten, false);
        assert_eq!(
            after(CompStep::CloseOrder, &written),
            Some(CompStep::ReleaseStock)
        );
        let waiting = reached(Phase::AwaitingPayment, false);
        assert_eq!(first(&waiting), Some(CompStep::RevokePoints));
        assert_eq!(
            after(CompStep::RevokePoints, &waiting),
            Some(CompStep::CloseOrder)
        );
        assert_eq!(after(CompStep::ReleaseStock, &waiting), None);
    }

    #[test]
    fn a_wechat_order_is_closed_first_and_not_before_the_minimum_interval() {
        let s = reached(Phase::AwaitingPayment, true);
        assert_eq!(first(&s), Some(CompStep::CloseWxOrder));
        assert_eq!(
            after(CompStep::CloseWxOrder, &s),
            Some(CompStep::RevokePoints)
        );
        assert_eq!(
            command(CompStep::CloseWxOrder, &s),
            Command::CloseWxOrder {
                order: s.request.order_id,
                not_before_ms: 300_005
            }
        );
    }
}
