//! `plexgate bench …`: measurements a user runs on their own machine. Every figure
//! is a ratio of two things measured side by side in the same run, because shared
//! machines are noisy.

pub mod datapath;
pub mod e2e;
pub mod ike;
pub mod store;

pub use datapath::datapath;
pub use e2e::e2e;
pub use ike::ike;
pub use store::store;
