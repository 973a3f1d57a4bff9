//! Loss measured the way an operator sees it: `ping -D` (timestamped replies) every few
//! milliseconds, and the longest silence between two replies.

use crate::{Host, Result, Topology};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Timestamps (`ping -D`: seconds since the Unix epoch) of the echo replies in ping's output.
pub fn reply_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// The longest gap between two replies in `ping -D` output, and the number of replies.
pub fn longest_gap(out: &str) -> (Duration, usize) {
    longest_gap_until(out, None)
}

/// [`longest_gap`], also counting the silence from the last reply to `end` (a [`unix_now`]
/// time), so an outage that lasts until the pinger is stopped is not missed.
pub fn longest_gap_until(out: &str, end: Option<f64>) -> (Duration, usize) {
    let times = reply_times(out);
    let gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(end.zip(times.last()).map(|(end, last)| end - last))
        .fold(0.0_f64, f64::max);
    (Duration::from_secs_f64(gap), times.len())
}

/// Now, in the unit of `ping -D` timestamps.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Starts `ping -n -D -i INTERVAL -W 1 [-c COUNT] TARGET` in `host` as process `name`.
pub fn start(
    t: &mut Topology,
    host: &Host,
    name: &str,
    target: &str,
    interval: &str,
    count: Option<u32>,
) -> Result<usize> {
    let count = count.map(|c| c.to_string());
    let mut args = vec!["ping", "-n", "-D", "-i", interval, "-W", "1"];
    if let Some(c) = &count {
        args.extend(["-c", c]);
    }
    args.push(target);
    t.spawn(host, name, &args)
}

/// Stops a pinger from [`start`] (SIGINT, as Ctrl-C) and returns the longest gap, the silence
/// before the stop included, and the reply count.
pub fn stop(t: &mut Topology, ping: usize) -> (Duration, usize) {
    let p = t.proc(ping);
    let end = unix_now();
    p.signal("INT");
    p.wait_exit(Duration::from_secs(2));
    longest_gap_until(&p.output(), Some(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "PING 198.51.100.10 (198.51.100.10) 56(84) bytes of data.
[1765000000.100000] 64 bytes from 198.51.100.10: icmp_seq=1 ttl=63 time=0.1 ms
[1765000000.110000] 64 bytes from 198.51.100.10: icmp_seq=2 ttl=63 time=0.1 ms
[1765000000.360000] 64 bytes from 198.51.100.10: icmp_seq=27 ttl=63 time=0.1 ms
[1765000000.370000] 64 bytes from 198.51.100.10: icmp_seq=28 ttl=63 time=0.1 ms

--- 198.51.100.10 ping statistics ---
28 packets transmitted, 4 received, 85.7143% packet loss, time 270ms
";

    #[test]
    fn the_longest_gap_is_between_two_replies() {
        assert_eq!(reply_times(OUT).len(), 4);
        let (gap, replies) = longest_gap(OUT);
        assert_eq!(replies, 4);
        assert!((gap.as_secs_f64() - 0.25).abs() < 1e-6, "{gap:?}");
        assert_eq!(longest_gap(""), (Duration::ZERO, 0));
    }

    #[test]
    fn an_outage_lasting_until_the_stop_counts() {
        let (gap, _) = longest_gap_until(OUT, Some(1_765_000_001.37));
        assert!((gap.as_secs_f64() - 1.0).abs() < 1e-6, "{gap:?}");
        let (gap, _) = longest_gap_until(OUT, Some(1_765_000_000.38));
        assert!((gap.as_secs_f64() - 0.25).abs() < 1e-6, "{gap:?}");
        assert_eq!(longest_gap_until("", Some(1.0)), (Duration::ZERO, 0));
    }
}
