//! Integration tests of alert-relay by behaviour, with a recording fake ntfy (wiremock).

mod helpers;

mod delivery;
mod intake;
mod restart;
