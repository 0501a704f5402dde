//! One file per subcommand.

pub mod attention;
pub mod convert;
pub mod demo;
pub mod eval;
pub mod forecast;
pub mod info;
pub mod predict;
pub mod train;
