//! The compensations: which are needed given how far the saga got, and in what order.

use super::{Command, CompStep, Phase};
use crate::domain::OrderId;

pub(super) fn command(step: CompStep, order: OrderId) -> Command {
    match step {
        CompStep::RevokePoints => Command::RevokePoints { order },
        CompStep::CloseOrder => Command::CloseOrder { order },
        CompStep::ReleaseStock => Command::ReleaseStock { order },
    }
}

/// Is `step` needed to undo a saga that reached `reached`?
fn is_needed(step: CompStep, reached: Phase) -> bool {
    let depth = forward_depth(reached);
    match step {
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

const ORDER: [CompStep; 3] = [
    CompStep::RevokePoints,
    CompStep::CloseOrder,
    CompStep::ReleaseStock,
];

/// The first compensation to run for a saga that reached `reached`; `None` when nothing
/// was taken, so the saga can fail straight away.
pub(super) fn first(reached: Phase) -> Option<CompStep> {
    ORDER.into_iter().find(|s| is_needed(*s, reached))
}

/// The compensation after `done`; `None` when everything is undone.
pub(super) fn after(done: CompStep, reached: Phase) -> Option<CompStep> {
    ORDER
        .into_iter()
        .filter(|s| *s > done)
        .find(|s| is_needed(*s, reached))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensations_undo_exactly_what_was_done_in_reverse() {
        assert_eq!(first(Phase::Started), None);
        assert_eq!(first(Phase::StockReserved), Some(CompStep::ReleaseStock));
        assert_eq!(first(Phase::OrderWritten), Some(CompStep::CloseOrder));
        assert_eq!(
            after(CompStep::CloseOrder, Phase::OrderWritten),
            Some(CompStep::ReleaseStock)
        );
        assert_eq!(first(Phase::AwaitingPayment), Some(CompStep::RevokePoints));
        assert_eq!(
            after(CompStep::RevokePoints, Phase::AwaitingPayment),
            Some(CompStep::CloseOrder)
        );
        assert_eq!(after(CompStep::ReleaseStock, Phase::AwaitingPayment), None);
    }
}
