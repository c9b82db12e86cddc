//! The attempt plan: what a request tries next, and whether it may try at
//! all. A request has candidates in order: the backends of its model's
//! pool, then the fallback models its route lists, each with a pool of its
//! own. The plan owns that order, the budget of tries (per model and in
//! all), the request's total deadline on each model, and the rule for
//! "may we try again": only while nothing of an answer has come back and
//! the body is still in hand. The proxy's phases ask it and tell it
//! outcomes; the plan does no I/O, so every decision is tested without a
//! socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RetryOn;

/// Attempts one request may make, fallbacks included: Pingora's own bound
/// on its retry loop (`ServerConf::max_retries`, set from this).
pub const MAX_ATTEMPTS: u32 = 16;

/// The failures a route tries again on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetrySet(u8);

impl RetrySet {
    pub fn of(causes: &[RetryOn]) -> Self {
        Self(
            causes
                .iter()
                .fold(0, |bits, &cause| bits | Self::bit(cause)),
        )
    }

    pub fn contains(self, cause: RetryOn) -> bool {
        self.0 & Self::bit(cause) != 0
    }

    fn bit(cause: RetryOn) -> u8 {
        1 << (cause as u8)
    }
}

/// How often a route's model is tried, and on what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request on the model's pool, the first included.
    pub attempts: u32,
    pub on: RetrySet,
}

/// What the plan says after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Another backend of the same model's pool.
    SameModel,
    /// The next fallback model (the move is armed: see [`AttemptPlan::take_move`]).
    NextModel,
    /// No further attempt: the failure is the answer.
    GiveUp,
}

/// Why no backend can be tried on the current model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// The model's total timeout is used up.
    Deadline,
    /// Every available backend was tried (or none is available).
    Backends,
}

#[derive(Debug, Clone)]
pub struct AttemptPlan {
    /// The current model's policy (a fallback's route has its own).
    policy: RetryPolicy,
    /// The requested route's: the failures that move on to a fallback.
    fallback_on: RetrySet,
    /// The requested route's fallback models, in order (none: `None`, so a
    /// plan without fallbacks allocates nothing).
    fallbacks: Option<Arc<[String]>>,
    /// Index in `fallbacks` of the next model to try.
    next_fallback: usize,
    /// Index in `fallbacks` of the model now serving, once one does.
    serving: Option<usize>,
    /// A failure armed a move to the next model; the next attempt makes it.
    move_armed: bool,
    /// Fallback models moved to so far.
    moves: u32,
    /// Backends of the current model's pool tried so far, in order.
    tried: Vec<usize>,
    /// Attempts at the backends of earlier models.
    earlier: u32,
    /// When the exchange on the current model must end; set at its first try.
    deadline: Option<Instant>,
    /// The upstream began to answer: nothing can be tried again.
    answered: bool,
    /// Why the last attempt failed, for the final message.
    last_error: Option<String>,
}

impl Default for AttemptPlan {
    /// The plan of a request that has none yet: one try, no fallbacks.
    fn default() -> Self {
        let once = RetryPolicy {
            attempts: 1,
            on: RetrySet::default(),
        };
        Self::new(once, RetrySet::default(), None)
    }
}

impl AttemptPlan {
    /// The plan of a request on a route with `policy`; `fallback_on` and
    /// `fallbacks` are the route's (empty for a request that reads no model).
    pub fn new(
        policy: RetryPolicy,
        fallback_on: RetrySet,
        fallbacks: Option<Arc<[String]>>,
    ) -> Self {
        Self {
            policy,
            fallback_on,
            fallbacks,
            next_fallback: 0,
            serving: None,
            move_armed: false,
            moves: 0,
            tried: Vec::new(),
            earlier: 0,
            deadline: None,
            answered: false,
            last_error: None,
        }
    }

    /// Attempts made, at every model.
    pub fn attempts(&self) -> u32 {
        self.earlier + self.tried.len() as u32
    }

    /// Backends of the current model's pool tried so far.
    pub fn tried(&self) -> &[usize] {
        &self.tried
    }

    /// Fallback models moved to so far.
    pub fn models_moved(&self) -> u32 {
        self.moves
    }

    /// The time left for the next attempt on the current model, the
    /// model's `total` timeout counted from its first attempt.
    pub fn time_left(&mut self, total: Duration, now: Instant) -> Result<Duration, Spent> {
        let deadline = *self.deadline.get_or_insert(now + total);
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Err(Spent::Deadline);
        }
        Ok(left)
    }

    /// Whether the current model's deadline has passed.
    pub fn past_deadline(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now > d)
    }

    /// An attempt at backend `index` of the current model's pool begins.
    pub fn attempt(&mut self, index: usize) {
        self.tried.push(index);
    }

    /// The last attempt failed on a pooled connection the backend had
    /// already closed: it does not count, and the backend may be tried again.
    pub fn forget_stale_attempt(&mut self) {
        self.tried.pop();
    }

    /// The upstream's answer began: nothing may be tried again.
    pub fn answered(&mut self) {
        self.answered = true;
    }

    pub fn is_answered(&self) -> bool {
        self.answered
    }

    pub fn note_failure(&mut self, why: impl Into<String>) {
        self.last_error = Some(why.into());
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// After a failure of kind `cause`: another backend (the route retries
    /// on it, tries are left, and `untried_available` says a backend is
    /// left to try), else the next fallback model (armed), else give up.
    pub fn after_failure(&mut self, cause: RetryOn, untried_available: bool) -> Next {
        if self.answered {
            return Next::GiveUp;
        }
        let tries_left =
            (self.tried.len() as u32) < self.policy.attempts && self.attempts() < MAX_ATTEMPTS;
        if self.policy.on.contains(cause) && tries_left && untried_available {
            return Next::SameModel;
        }
        if self.fallback_on.contains(cause) && self.arm_move() {
            return Next::NextModel;
        }
        Next::GiveUp
    }

    /// The current model's pool has no backend left to offer: whether the
    /// request moves on to a fallback (armed).
    pub fn pool_spent(&mut self) -> bool {
        !self.answered && self.arm_move()
    }

    fn arm_move(&mut self) -> bool {
        let due = self.next_fallback < self.fallbacks().len() && self.attempts() < MAX_ATTEMPTS;
        self.move_armed |= due;
        due
    }

    /// Whether a move to a fallback is armed; disarms it.
    pub fn take_move(&mut self) -> bool {
        std::mem::take(&mut self.move_armed)
    }

    /// The next fallback model to try admitting, if any is left.
    pub fn next_model(&mut self) -> Option<&str> {
        let model = self.fallbacks.as_deref()?.get(self.next_fallback)?;
        self.next_fallback += 1;
        Some(model)
    }

    /// The model the request came to before the current one (a fallback's
    /// name, or `None` for the requested model).
    pub fn serving_model(&self) -> Option<&str> {
        self.serving
            .and_then(|i| self.fallbacks().get(i))
            .map(String::as_str)
    }

    fn fallbacks(&self) -> &[String] {
        self.fallbacks.as_deref().unwrap_or_default()
    }

    /// The last model [`next_model`](Self::next_model) gave now serves the
    /// request, with its route's `policy`: a fresh start on its pool, with
    /// its own deadline (the last failure stays, for the final message).
    pub fn moved(&mut self, policy: RetryPolicy) {
        self.serving = Some(self.next_fallback - 1);
        self.moves += 1;
        self.policy = policy;
        self.earlier += self.tried.len() as u32;
        self.tried.clear();
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RetryOn::*;

    fn plan(attempts: u32, on: &[RetryOn], fallbacks: &[&str]) -> AttemptPlan {
        let fallbacks: Vec<String> = fallbacks.iter().map(|m| m.to_string()).collect();
        AttemptPlan::new(
            RetryPolicy {
                attempts,
                on: RetrySet::of(on),
            },
            RetrySet::of(on),
            Some(fallbacks.into()),
        )
    }

    #[test]
    fn retries_follow_the_route_and_its_budget() {
        let mut p = plan(2, &[ServerError], &[]);
        p.attempt(0);
        assert_eq!(p.after_failure(ServerError, true), Next::SameModel);
        assert_eq!(
            p.after_failure(RateLimited, true),
            Next::GiveUp,
            "not a cause it retries"
        );
        p.attempt(1);
        assert_eq!(
            p.after_failure(ServerError, true),
            Next::GiveUp,
            "budget used"
        );
        let mut p = plan(3, &[ServerError], &[]);
        p.attempt(0);
        assert_eq!(
            p.after_failure(ServerError, false),
            Next::GiveUp,
            "nothing untried"
        );
    }

    #[test]
    fn a_spent_model_moves_on_to_each_fallback_in_turn() {
        let mut p = plan(1, &[ConnectError, RateLimited], &["b", "c"]);
        p.attempt(0);
        assert_eq!(p.after_failure(RateLimited, true), Next::NextModel);
        assert!(p.take_move());
        assert!(!p.take_move(), "a move is made once");
        assert_eq!(p.next_model(), Some("b"));
        p.moved(RetryPolicy {
            attempts: 2,
            on: RetrySet::of(&[ServerError]),
        });
        assert_eq!((p.attempts(), p.tried()), (1, &[][..]));
        assert_eq!(p.serving_model(), Some("b"));
        assert_eq!(p.models_moved(), 1);
        p.attempt(0);
        // The fallback's own route retries on 5xx.
        assert_eq!(p.after_failure(ServerError, true), Next::SameModel);
        p.attempt(1);
        // Only the requested route's causes move on to the next model.
        assert_eq!(p.after_failure(ServerError, true), Next::GiveUp);
        assert!(
            p.pool_spent(),
            "an empty pool hands over whatever the cause"
        );
        assert!(p.take_move());
        assert_eq!(p.next_model(), Some("c"));
        assert_eq!(p.next_model(), None);
        assert!(!p.pool_spent());
        assert_eq!(p.attempts(), 3);
    }

    #[test]
    fn nothing_is_tried_again_once_the_answer_began() {
        let mut p = plan(3, &[ServerError], &["b"]);
        p.attempt(0);
        p.answered();
        assert_eq!(p.after_failure(ServerError, true), Next::GiveUp);
        assert!(!p.pool_spent());
    }

    #[test]
    fn a_stale_pooled_connection_does_not_count() {
        let mut p = plan(1, &[], &[]);
        p.attempt(0);
        p.forget_stale_attempt();
        assert_eq!(p.attempts(), 0);
        assert!(p.tried().is_empty());
    }

    #[test]
    fn the_deadline_runs_from_a_models_first_attempt() {
        let start = Instant::now();
        let mut p = plan(3, &[Timeout], &["b"]);
        let total = Duration::from_secs(10);
        assert_eq!(p.time_left(total, start), Ok(total));
        let later = start + Duration::from_secs(4);
        assert_eq!(p.time_left(total, later), Ok(Duration::from_secs(6)));
        assert!(!p.past_deadline(later));
        let after = start + Duration::from_secs(11);
        assert!(p.past_deadline(after));
        assert_eq!(p.time_left(total, after), Err(Spent::Deadline));
        // A fallback starts a deadline of its own.
        p.after_failure(Timeout, false);
        p.take_move();
        p.next_model();
        p.moved(RetryPolicy {
            attempts: 1,
            on: RetrySet::default(),
        });
        assert_eq!(p.time_left(total, after), Ok(total));
    }

    #[test]
    fn every_attempt_counts_against_the_bound() {
        let many: Vec<String> = (0..MAX_ATTEMPTS).map(|i| format!("m{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut p = plan(MAX_ATTEMPTS, &[ServerError], &names);
        for i in 0..MAX_ATTEMPTS as usize {
            p.attempt(i);
        }
        assert_eq!(p.after_failure(ServerError, true), Next::GiveUp);
        assert!(!p.pool_spent());
    }
}
