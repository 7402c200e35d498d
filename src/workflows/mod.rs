//! Pure saga state machines: `decide(state, event, now) -> Decision`. No I/O, no clock, no
//! randomness: the actors pass those in and execute the commands that come back.

pub mod checkout;
