//! Freed memory kept in the process for the next allocations of a training step.
//!
//! Every step of a training run frees and allocates the same large buffers: activations, their
//! gradients, im2col matrices, padded copies. glibc's allocator maps each block above its mmap
//! threshold (128 KiB at first, raised to the size of such a block when one is freed, at most
//! 32 MiB) on its own and unmaps it when freed, and gives the free top of its heaps above its
//! trim threshold (128 KiB, twice the mmap threshold once that has risen) back to the system.
//! So each step's buffers start as fresh pages, a page fault and a zero fill of 4 KiB each, and
//! the kernel's page-table locks serialise the threads that touch them. Fixing both thresholds
//! keeps the freed memory for the next step. Measured in docs/performance.md ("freed memory
//! kept", 2026-12-06): a training step's page faults −53 to −90 %, its time −2 to −11 %.

use core::sync::atomic::{AtomicBool, Ordering};

static KEPT: AtomicBool = AtomicBool::new(false);

/// glibc's largest mmap threshold: blocks above it are still mapped and unmapped each time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;

/// Asks the allocator to keep freed memory for the next allocations: glibc's mmap threshold
/// fixed at its largest (32 MiB) and its trim threshold at 2 GiB, so a training step's buffers
/// reuse the pages of the step before instead of faulting fresh ones in. The process's resident
/// memory then stays at its peak instead of shrinking between steps. Call it first in `main`;
/// the examples' CPU runs do.
///
/// Returns whether the allocator took the settings: `false` where the C library is not glibc
/// (nothing changes there) or refused them.
pub fn keep_freed_memory() -> bool {
    let kept = set_thresholds();
    if kept {
        KEPT.store(true, Ordering::Relaxed);
    }
    kept
}

/// Whether [`keep_freed_memory`] has taken effect in this process.
pub fn freed_memory_kept() -> bool {
    KEPT.load(Ordering::Relaxed)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: `mallopt` only changes the allocator's parameters; glibc serialises it with every
    // allocation, and both values are in its accepted ranges (it returns 0 otherwise).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scenario [`a_freed_block_serves_the_next_one`] runs in a fresh process (the
    /// allocator's thresholds move with every block a process frees, so only a new process
    /// starts from glibc's defaults): with `SSKD_FREED_MEMORY_SCENARIO` set to `keep` or
    /// `default`, it holds a written 8 MiB block and prints the bytes in mapped blocks while it
    /// is held and the free bytes the heaps keep after it is freed; without it, nothing.
    #[test]
    fn freed_memory_scenario() {
        let Ok(scenario) = std::env::var("SSKD_FREED_MEMORY_SCENARIO") else {
            return;
        };
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let _ = scenario;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            if scenario == "keep" {
                assert!(keep_freed_memory());
            }
            let block = vec![1u8; 8 << 20];
            // SAFETY: `mallinfo2` only reads the allocator's counters.
            let mapped = unsafe { libc::mallinfo2() }.hblkhd;
            drop(std::hint::black_box(block));
            let kept = unsafe { libc::mallinfo2() }.fordblks;
            println!("SCENARIO mapped={mapped} kept={kept}");
        }
    }

    /// On glibc, with the settings, an 8 MiB block comes from the heap and stays there once
    /// freed, for the next one; with glibc's defaults it is mapped on its own and unmapped.
    /// Elsewhere [`keep_freed_memory`] changes nothing and says so.
    #[test]
    fn a_freed_block_serves_the_next_one() {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(!keep_freed_memory());
            assert!(!freed_memory_kept());
            return;
        }
        let run = |scenario: &str| -> (usize, usize) {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "freed_memory::tests::freed_memory_scenario",
                    "--nocapture",
                ])
                .env("SSKD_FREED_MEMORY_SCENARIO", scenario)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(output.status.success(), "{text}");
            let line = text
                .lines()
                .find_map(|line| line.strip_prefix("SCENARIO "))
                .unwrap_or_else(|| panic!("no scenario line: {text}"));
            let value = |key: &str| -> usize {
                line.split(' ')
                    .find_map(|field| field.strip_prefix(key))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{key} in {line}"))
            };
            (value("mapped="), value("kept="))
        };
        let block = 8 << 20;
        let (mapped, kept) = run("default");
        assert!(
            mapped >= block && kept < block,
            "glibc's defaults: mapped {mapped}, kept {kept}"
        );
        let (mapped, kept) = run("keep");
        assert!(
            mapped < block && kept >= block,
            "kept: mapped {mapped}, kept {kept}"
        );
        assert!(keep_freed_memory());
        assert!(freed_memory_kept());
    }
}
