//! Counters that saturate: statistics must never wrap (a frontend can drive them as far as
//! it likes) nor panic. `x.inc()` reads better than `x = x.saturating_add(1)` (cf.
//! Firecracker's `SharedIncMetric::inc`), and the field stays a plain integer for tests.

/// A saturating counter operation on a plain integer.
pub trait Count {
    /// Adds one, saturating.
    fn inc(&mut self);
    /// Adds `n`, saturating.
    fn add_sat(&mut self, n: Self);
}

macro_rules! count {
    ($($t:ty),*) => {$(
        impl Count for $t {
            fn inc(&mut self) {
                *self = self.saturating_add(1);
            }
            fn add_sat(&mut self, n: Self) {
                *self = self.saturating_add(n);
            }
        }
    )*};
}

count!(u16, u32, u64, usize);

#[cfg(test)]
mod tests {
    use super::Count;

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let mut a = u64::MAX - 1;
        a.inc();
        a.inc();
        assert_eq!(a, u64::MAX);
        let mut b = 5u32;
        b.add_sat(7);
        assert_eq!(b, 12);
        b.add_sat(u32::MAX);
        assert_eq!(b, u32::MAX);
    }
}
