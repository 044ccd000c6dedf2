//! Test support shared by this crate's integration tests and the fuzz targets.

pub(crate) mod model;
