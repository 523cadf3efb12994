//! Settings of glibc's allocator that the server depends on. Other C libraries need none of
//! this, so on them both functions do nothing.

/// Turns off glibc's fastbins, the per-size lists where `free` leaves small blocks unmerged.
///
/// fjall allocates memtable nodes on the writer thread and frees them on its own threads after
/// a flush, and such frees collect in the fastbins of the writer's heap. The writer's next
/// large allocation then merged them all at once, which took 30 to 75 ms in benchmark runs on
/// a two-core machine, while every client waited (BENCHMARKS.md, "Stalls of the writer").
/// Without fastbins each free merges its own block, and side by side the throughput did not
/// change.
pub fn tune_for_server() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[expect(unsafe_code, reason = "mallopt has no safe wrapper")]
    // SAFETY: mallopt changes a setting of the allocator, which takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

/// Returns free heap memory to the system. glibc keeps memory freed in the middle of its heaps,
/// so the buffers that recovery frees would otherwise stay resident.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[expect(unsafe_code, reason = "malloc_trim has no safe wrapper")]
    // SAFETY: malloc_trim only returns free pages of the allocator's heaps to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Free blocks in glibc's fastbins, over every heap of the process.
    #[expect(unsafe_code, reason = "mallinfo2 has no safe wrapper")]
    fn fastbin_blocks() -> usize {
        // SAFETY: mallinfo2 only reads the allocator's statistics, under its locks.
        unsafe { libc::mallinfo2() }.smblks
    }

    /// Allocates small blocks on one thread and frees them on another, as fjall does with
    /// memtable nodes.
    fn free_on_another_thread(num_blocks: usize) {
        let blocks: Vec<Box<[u8; 48]>> = std::thread::spawn(move || {
            (0..num_blocks)
                .map(|index| Box::new([index as u8; 48]))
                .collect()
        })
        .join()
        .expect("allocating thread panicked");
        std::thread::spawn(move || drop(blocks))
            .join()
            .expect("freeing thread panicked");
    }

    /// Other tests run in this process at the same time, but once fastbins are off no thread
    /// can add to them, so their count cannot grow.
    #[test]
    fn cross_thread_frees_skip_fastbins() {
        tune_for_server();
        let before = fastbin_blocks();
        free_on_another_thread(20_000);
        let after = fastbin_blocks();
        assert!(
            after <= before,
            "{} blocks entered the fastbins after tune_for_server",
            after - before
        );
    }
}
