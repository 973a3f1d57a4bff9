//! Fuzz the ClientHello sniffer: one-shot, and fed in segments whose sizes come from the input;
//! the first verdict of the incremental parse is the one the whole input gets.
#![no_main]
use kawaii_sniff::{ClientHelloSniffer, TlsSniff, sniff_sni};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = sniff_sni(data);
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut s = ClientHelloSniffer::default();
    let mut end = 0;
    let last = loop {
        let answer = s.feed(&data[..end]);
        if answer != TlsSniff::NeedMore || end == data.len() {
            break answer;
        }
        end = (end + step).min(data.len());
    };
    assert_eq!(last, whole, "after {end} of {} bytes", data.len());
    assert!(s.consumed() <= data.len());
});
