//! The pool manager shared by the workspace tests and the `config_parse` fuzz target (the
//! fuzz crate, a workspace of its own, includes this file by path).

/// A pool manager whose connections are the number 7 and always recycle.
pub(crate) struct Connections;

impl backstop::pool::Manager for Connections {
    type Type = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(7)
    }

    async fn recycle(
        &self,
        _: &mut u32,
        _: &backstop::pool::Metrics,
    ) -> backstop::pool::RecycleResult<std::io::Error> {
        Ok(())
    }
}
