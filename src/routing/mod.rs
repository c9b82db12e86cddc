//! Route table (path + model → pool), upstream pools, load balancing and
//! backend health.

pub mod health;
mod pool;
pub mod settings;
mod table;

pub use pool::{resolve, Backend, InflightGuard, Pool};
pub use table::{PathMatch, RouteEntry, RouteTable};
