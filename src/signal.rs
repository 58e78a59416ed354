//! A change signal: one list of wakers that every open stream waits on
//! together, woken all at once when anything they watch changes (events,
//! the online count, a ping, shutdown).
//!
//! A stream keeps a [`Subscription`]: the epoch it last saw and whether its
//! waker is already in the list. Waiting costs one lock and, at most once
//! per change, one waker clone; there is no future to build or box.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Signal {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped by every [`Signal::notify`].
    epoch: u64,
    /// Whom to wake at the next notify: at most one waker per subscription.
    /// One that went away leaves its waker here until then (a ping at the
    /// latest), which is harmless.
    waiters: Vec<Waker>,
}

/// One waiter's place: the epoch it last saw, and where its waker is in
/// the list if it registered during that epoch.
#[derive(Debug)]
pub struct Subscription {
    seen: u64,
    slot: Option<usize>,
}

impl Signal {
    /// A subscription that has seen everything so far.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            seen: self.state.lock().expect("signal lock").epoch,
            slot: None,
        }
    }

    /// Ready if the signal was notified since `subscription` was made or
    /// last Ready; otherwise registers `cx`'s waker for the next notify.
    ///
    /// Call it after looking at what you wait for. The epoch `seen` dates
    /// from before that look, and it is compared, and the waker registered,
    /// under the lock that `notify` bumps the epoch under. So a change that
    /// lands after the look (its notify follows it) either shows here as a
    /// new epoch or finds the waker.
    pub fn poll_changed(&self, subscription: &mut Subscription, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock().expect("signal lock");
        if state.epoch != subscription.seen {
            subscription.seen = state.epoch;
            subscription.slot = None;
            return Poll::Ready(());
        }
        match subscription.slot {
            // Polled again while waiting: keep the one slot, with the
            // latest waker (`clone_from` skips the clone when it is the same).
            Some(slot) => state.waiters[slot].clone_from(cx.waker()),
            None => {
                subscription.slot = Some(state.waiters.len());
                state.waiters.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }

    /// Starts a new epoch and wakes everyone waiting, outside the lock so
    /// they can register again at once.
    pub fn notify(&self) {
        let waiters = {
            let mut state = self.state.lock().expect("signal lock");
            state.epoch += 1;
            let capacity = state.waiters.len();
            std::mem::replace(&mut state.waiters, Vec::with_capacity(capacity))
        };
        for waker in waiters {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter::default());
        (counter.clone(), Waker::from(counter))
    }

    fn wakes(counter: &Counter) -> usize {
        counter.0.load(Ordering::SeqCst)
    }

    fn waiting(signal: &Signal) -> usize {
        signal.state.lock().unwrap().waiters.len()
    }

    #[test]
    fn a_waiter_registered_before_notify_is_woken_and_then_sees_the_change() {
        let signal = Signal::default();
        let mut subscription = signal.subscribe();
        let (counter, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(signal.poll_changed(&mut subscription, &mut cx).is_pending());
        assert_eq!(wakes(&counter), 0);
        signal.notify();
        assert_eq!(wakes(&counter), 1);
        assert!(signal.poll_changed(&mut subscription, &mut cx).is_ready());
        assert!(
            signal.poll_changed(&mut subscription, &mut cx).is_pending(),
            "the change is seen once"
        );
    }

    #[test]
    fn polling_again_in_one_epoch_keeps_one_waker_the_latest() {
        let signal = Signal::default();
        let mut subscription = signal.subscribe();
        let (first, first_waker) = counter();
        let (second, second_waker) = counter();
        for _ in 0..3 {
            let mut cx = Context::from_waker(&first_waker);
            assert!(signal.poll_changed(&mut subscription, &mut cx).is_pending());
        }
        let mut cx = Context::from_waker(&second_waker);
        assert!(signal.poll_changed(&mut subscription, &mut cx).is_pending());
        assert_eq!(waiting(&signal), 1);
        signal.notify();
        assert_eq!((wakes(&first), wakes(&second)), (0, 1));
        assert_eq!(waiting(&signal), 0);
    }

    #[test]
    fn a_notify_before_waiting_is_not_missed() {
        let signal = Signal::default();
        let mut subscription = signal.subscribe();
        // The waiter has looked and found nothing; then a change lands
        // before it registers.
        signal.notify();
        let (counter, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(signal.poll_changed(&mut subscription, &mut cx).is_ready());
        assert_eq!(waiting(&signal), 0, "ready, so nothing to register");
        assert_eq!(wakes(&counter), 0);
    }

    #[test]
    fn a_subscription_starts_at_the_current_epoch() {
        let signal = Signal::default();
        signal.notify();
        let mut subscription = signal.subscribe();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(signal.poll_changed(&mut subscription, &mut cx).is_pending());
    }
}
