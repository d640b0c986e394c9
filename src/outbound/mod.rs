//! Outbound connections the service makes on a client's behalf (fetching a submitted URL,
//! delivering a webhook): the address policy every connection must pass, and webhook
//! signatures.

pub mod address;
pub mod client;
pub mod signature;
