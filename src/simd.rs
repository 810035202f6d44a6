//! Runtime choice of the widest vector instructions the CPU kernels were written for: the
//! crate builds for baseline x86-64 (SSE2), and the hot loops of the CPU engine and baselines
//! are compiled a second time for AVX2 and chosen once per call.

/// Whether the CPU has AVX2 and FMA (the standard library caches the check).
#[inline]
pub fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `f`, compiled for AVX2 when the CPU has it. `f` must be `#[inline(always)]` code (or a
/// closure over it) so that it is compiled into the AVX2 copy. Rust never fuses a multiply and
/// an add into an FMA, so both copies round identically.
#[inline(always)]
pub fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { wide(f) };
        }
    }
    f()
}
