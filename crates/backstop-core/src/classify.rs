//! The one shape of an error classifier: a failed call's error in, a decision out.
//!
//! A retry policy turns an error into "retry, wait, or stop" and a router into an error
//! class; both take any [`Classify`] with their own decision type, so a plain closure, a
//! unit struct with a standard rule and a user's own classifier all fit either place.

/// Classifies a failed call's error into a decision of type `Out`.
///
/// Every `Fn(&E) -> Out + Send + Sync` closure is one, so a classifier is usually written
/// in place; a named type (a standard rule a layer defaults to) implements it directly.
/// Classifiers are shared by every call of a layer, hence `Send + Sync`.
///
/// ```
/// use backstop_core::classify::Classify;
///
/// #[derive(Debug, PartialEq)]
/// enum Next {
///     Again,
///     Stop,
/// }
///
/// /// A standard rule, named so a layer can default to it.
/// struct ServerErrorsAgain;
///
/// impl Classify<u16, Next> for ServerErrorsAgain {
///     fn classify(&self, status: &u16) -> Next {
///         if *status >= 500 { Next::Again } else { Next::Stop }
///     }
/// }
///
/// fn decide(classifier: &impl Classify<u16, Next>, status: u16) -> Next {
///     classifier.classify(&status)
/// }
///
/// assert_eq!(decide(&ServerErrorsAgain, 503), Next::Again);
/// assert_eq!(decide(&ServerErrorsAgain, 404), Next::Stop);
/// // A closure needs no type of its own.
/// let only_429_again = |status: &u16| if *status == 429 { Next::Again } else { Next::Stop };
/// assert_eq!(decide(&only_429_again, 429), Next::Again);
/// assert_eq!(decide(&only_429_again, 503), Next::Stop);
/// ```
pub trait Classify<E, Out>: Send + Sync {
    /// The decision for `error`.
    fn classify(&self, error: &E) -> Out;
}

impl<E, Out, F> Classify<E, Out> for F
where
    F: Fn(&E) -> Out + Send + Sync,
{
    fn classify(&self, error: &E) -> Out {
        self(error)
    }
}
