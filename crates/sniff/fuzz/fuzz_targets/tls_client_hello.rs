//! Fuzz the ClientHello sniffer: one-shot, and fed in segments whose sizes come from the input.
#![no_main]
use kawaii_sniff::{ClientHelloSniffer, TlsSniff, sniff_sni};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = sniff_sni(data);
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut s = ClientHelloSniffer::default();
    let mut end = 0;
    let mut last = TlsSniff::NeedMore;
    while end < data.len() {
        end = (end + step).min(data.len());
        last = s.feed(&data[..end]);
        if last != TlsSniff::NeedMore {
            break;
        }
    }
    // Incremental and one-shot parsing agree once the whole input was seen.
    if end == data.len() {
        assert_eq!(last, whole);
    }
});
