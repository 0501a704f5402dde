//! Running the computation on the CPU backends' own thread pool.
//!
//! Flex, NdArray and dl-kernels split large operations across rayon's pool. Called from the
//! program's main thread, each such operation hands its work to the pool's threads and waits;
//! when it is done those threads spin for a while before they sleep, on the same cores as the
//! main thread, which by then runs the next (serial) operation. With a pool of 2 on a 2-core
//! machine that made a second thread *slow down* most training steps (docs/performance.md).
//! [`on_compute_threads`] runs the whole computation on one of the pool's threads instead:
//! a parallel operation then splits between that thread and the others, and nothing else
//! competes with them for the cores.

/// The intra-op thread count: `RAYON_NUM_THREADS` when set to a positive number, else the
/// number of logical CPUs.
///
/// ```
/// assert!(dl_core::compute_threads() >= 1);
/// ```
pub fn compute_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Run `work` on a thread of a fresh rayon pool of `threads` threads (see the module's text),
/// and return its result. The pool's threads get 64 MiB stacks, so deep recursion (a long
/// autodiff graph) has more room than on a default spawned thread. When the pool cannot be
/// built (the system refuses threads), `work` runs on the calling thread.
///
/// ```
/// let sum = dl_core::on_compute_threads(2, || {
///     assert_eq!(rayon::current_num_threads(), 2);
///     1 + 1
/// });
/// assert_eq!(sum, 2);
/// ```
pub fn on_compute_threads<R: Send>(threads: usize, work: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .stack_size(64 << 20)
        .thread_name(|i| format!("compute-{i}"))
        .build()
    {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_a_pool_thread_of_the_given_size() {
        for threads in [1, 3] {
            let (inside, size) = on_compute_threads(threads, || {
                (
                    rayon::current_thread_index().is_some(),
                    rayon::current_num_threads(),
                )
            });
            assert!(inside, "the work runs on one of the pool's threads");
            assert_eq!(size, threads);
        }
        assert_eq!(on_compute_threads(0, rayon::current_num_threads), 1);
    }
}
