//! Using an [`LrSchedule`] where Burn expects a [`LrScheduler`] (for example Burn's `Learner`).

use std::sync::Arc;

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};

use crate::schedule::LrSchedule;

/// Record key of the step counter.
const STEP_KEY: &str = "step";

/// A [`LrSchedule`] with a step counter: Burn's [`LrScheduler`] trait, whose `step()` returns
/// the learning rate of the next optimizer step (the first call returns `schedule.lr(0)`).
///
/// The counter is the whole state; `to_record`/`load_record` save and restore it.
///
/// ```
/// use burn::lr_scheduler::LrScheduler;
/// use dl_optim::{ScheduledLr, StepLr};
/// let mut scheduler = ScheduledLr::new(StepLr::new(1.0, 2, 0.5)?);
/// let lrs: Vec<f64> = (0..4).map(|_| scheduler.step()).collect();
/// assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5]);
///
/// let record = scheduler.to_record();
/// let mut resumed = ScheduledLr::new(StepLr::new(1.0, 2, 0.5)?);
/// resumed.load_record(record);
/// assert_eq!(resumed.step(), 0.25);
/// # Ok::<(), dl_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ScheduledLr {
    schedule: Arc<dyn LrSchedule>,
    next_step: usize,
}

impl ScheduledLr {
    /// Start `schedule` at step 0.
    pub fn new(schedule: impl LrSchedule + 'static) -> Self {
        Self::from_arc(Arc::new(schedule))
    }

    /// Start a shared schedule (such as [`ScheduleConfig::build`](crate::ScheduleConfig::build)
    /// returns) at step 0.
    pub fn from_arc(schedule: Arc<dyn LrSchedule>) -> Self {
        Self {
            schedule,
            next_step: 0,
        }
    }

    /// The index of the step whose learning rate the next `step()` returns.
    pub fn next_step(&self) -> usize {
        self.next_step
    }

    /// The schedule being followed.
    pub fn schedule(&self) -> &Arc<dyn LrSchedule> {
        &self.schedule
    }
}

impl LrScheduler for ScheduledLr {
    fn step(&mut self) -> f64 {
        let lr = self.schedule.lr(self.next_step);
        self.next_step = self.next_step.saturating_add(1);
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar(STEP_KEY, self.next_step as u64)
    }

    /// A record without a step counter (not written by this type) leaves the counter as is.
    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record
            .scalar::<u64>(STEP_KEY)
            .and_then(|s| usize::try_from(s).ok())
        {
            self.next_step = step;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ExponentialLr;

    #[test]
    fn record_survives_bytes_and_resumes_the_sequence() {
        let schedule = || ExponentialLr::new(1.0, 0.5).unwrap();
        let mut scheduler = ScheduledLr::new(schedule());
        for _ in 0..3 {
            scheduler.step();
        }
        let bytes = scheduler.to_record().into_bytes().unwrap();
        let mut resumed = ScheduledLr::new(schedule());
        resumed.load_record(LrSchedulerRecord::from_bytes(bytes).unwrap());
        assert_eq!(resumed.next_step(), 3);
        assert_eq!(resumed.step(), 0.125);
        assert_eq!(scheduler.step(), 0.125);

        let mut untouched = ScheduledLr::new(schedule());
        untouched.load_record(LrSchedulerRecord::new());
        assert_eq!(untouched.step(), 1.0);
    }
}
