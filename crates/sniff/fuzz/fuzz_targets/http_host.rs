//! Fuzz the HTTP request head sniffer with a cap taken from the input.
#![no_main]
use kawaii_sniff::{HostSniffer, sniff_host};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let max = usize::from(data.first().copied().unwrap_or(0)) * 64;
    let _ = sniff_host(data, max);
    let mut s = HostSniffer::new(16 * 1024);
    for end in (0..=data.len()).step_by(7) {
        let _ = s.feed(&data[..end]);
    }
});
