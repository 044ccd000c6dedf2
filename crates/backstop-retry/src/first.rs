//! The plain call's future: the first attempt as it is, and the retries built (and boxed)
//! only when it fails.

use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// Polls the first attempt; on its error, hands the error to `then` and polls the
    /// boxed retries it returns. Or, for a call with no plain first attempt, polls the
    /// boxed call it was made with.
    ///
    /// Hand-written rather than an `async` block: a call that succeeds at once pays for
    /// one match around the attempt's own poll, where each async wrapper cost a move of its
    /// state and an out-of-line drop (issue 20's success path).
    pub(crate) struct FirstAttempt<Fut, Then, Rest> {
        #[pin]
        state: State<Fut, Rest>,
        then: Option<Then>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, Rest> {
        First { #[pin] attempt: Fut },
        Rest { rest: Pin<Box<Rest>> },
    }
}

impl<Fut, Then, Rest> FirstAttempt<Fut, Then, Rest> {
    /// `attempt` first; `then(error)` after it fails.
    pub(crate) fn new(attempt: Fut, then: Then) -> Self {
        Self {
            state: State::First { attempt },
            then: Some(then),
        }
    }

    /// A call that is `rest` from the start.
    pub(crate) fn boxed(rest: Pin<Box<Rest>>) -> Self {
        Self {
            state: State::Rest { rest },
            then: None,
        }
    }
}

impl<T, E, Fut, Then, Rest> Future for FirstAttempt<Fut, Then, Rest>
where
    Fut: Future<Output = Result<T, E>>,
    Then: FnOnce(E) -> Pin<Box<Rest>>,
    Rest: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::First { attempt } => match ready!(attempt.poll(cx)) {
                    Ok(value) => return Poll::Ready(Ok(value)),
                    Err(error) => match this.then.take() {
                        Some(then) => this.state.set(State::Rest { rest: then(error) }),
                        // `then` is only taken here, once, as the state leaves `First`.
                        None => return Poll::Ready(Err(error)),
                    },
                },
                StateProj::Rest { rest } => return rest.as_mut().poll(cx),
            }
        }
    }
}
