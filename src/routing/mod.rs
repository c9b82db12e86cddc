//! Route table (path + model → pool), upstream pools, load balancing and
//! backend health.

pub mod health;
mod plan;
mod pool;
pub mod settings;
mod table;

pub use plan::{AttemptPlan, Next, RetryPolicy, RetrySet, Spent, MAX_ATTEMPTS};
pub use pool::{resolve, Backend, InflightGuard, Pool};
pub use table::{PathMatch, RouteEntry, RouteTable};
