//! The heap kept across invocations. glibc's malloc gives the top of the heap back to
//! the kernel once 128 KiB of it is free, so a route whose request takes a few hundred
//! KiB (an upload: the event, the body, the parsed batch, the stored payload) grew the
//! heap with `brk` and shrank it again on most invocations, and paid a page fault for
//! each page on the way up (`strace -c` of a warm upload: 0.7 `brk` per request).
//! A container serves one request at a time until it ends, and its memory is billed
//! whether used or not, so what one request needed is kept for the next.

/// Freed memory up to this much stays in the process. Above the 1 MiB body limit and
/// what it parses into; far below the smallest function's memory (template.yaml).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const KEEP_BYTES: libc::c_int = 16 << 20;

/// Tells malloc to keep freed memory (and to serve blocks below [`KEEP_BYTES`] from
/// the heap, not from a mapping of their own that each `free` unmaps). Called once,
/// before the first invocation. A no-op where the C library is not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and only changes malloc's thresholds; it is
    // called before the runtime serves a request, and malloc is thread-safe anyway.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_BYTES);
        libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP_BYTES);
    }
}
