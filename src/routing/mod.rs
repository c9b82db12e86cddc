//! Route table (path + model → pool), upstream pools, load balancing and
//! backend health.

mod glob;
pub mod health;
mod pool;
mod table;

pub use glob::glob_matches;
pub use pool::{load_ca_file, resolve, Backend, InflightGuard, Pool};
pub use table::{PathMatch, RouteEntry, RouteTable};
