//! Fuzz the HTTP request head sniffer with a cap taken from the input: fed in segments whose size
//! comes from the input, its first verdict agrees with a one-shot parse of the whole input (the
//! same route, or a rejection for both; which of 400/431 may depend on how much had arrived).
#![no_main]
use kawaii_sniff::{HostSniff, HostSniffer, sniff_host};
use libfuzzer_sys::fuzz_target;

fn same_class(a: &HostSniff, b: &HostSniff) -> bool {
    let rejected = |s: &HostSniff| matches!(s, HostSniff::Malformed(_) | HostSniff::TooLarge);
    a == b || (rejected(a) && rejected(b))
}

fuzz_target!(|data: &[u8]| {
    let max = usize::from(data.first().copied().unwrap_or(0)) * 64;
    let step = usize::from(data.get(1).copied().unwrap_or(1)).max(1);
    let whole = sniff_host(data, max);
    let mut s = HostSniffer::new(max);
    let mut end = 0;
    let last = loop {
        let answer = s.feed(&data[..end]);
        if answer != HostSniff::NeedMore || end == data.len() {
            break answer;
        }
        end = (end + step).min(data.len());
    };
    // An early verdict (a route, or a 400/431 rejection) is the one the complete input gets.
    assert!(
        same_class(&last, &whole),
        "after {end} of {} bytes: {last:?}, whole input: {whole:?}",
        data.len()
    );
    if let HostSniff::Found { head_len, .. } = whole {
        assert!(head_len <= data.len() && head_len <= max);
    }
});
