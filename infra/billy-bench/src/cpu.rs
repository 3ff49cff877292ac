//! Where a run's CPU went, from Linux's /proc: the two emulators (LocalStack, DynamoDB Local; the
//! first process whose command line names each, as one stack runs per machine), the bench's own
//! process (Billy's functions, the local runner and the sandbox gateway all run in it), and the
//! machine as a whole (all its cores, busy = not idle nor waiting on I/O; in a container, the
//! host's). Figures are cores in use on average over the run: 2.0 on this machine is every core
//! busy. Elsewhere than Linux the figures are absent.

use serde_json::{Value, json};
use std::time::Instant;

/// /proc reports process times in clock ticks of 1/100 s (`USER_HZ`) on every Linux architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// The processes measured: a name, and how each is found.
const PROCESSES: [(&str, Finder); 3] = [
    ("localstack", Finder::Cmdline("localstack.runtime.main")),
    ("dynamodb_local", Finder::Cmdline("DynamoDBLocal")),
    ("bench_and_billy", Finder::OwnProcess),
];

#[derive(Debug, Clone, Copy)]
enum Finder {
    Cmdline(&'static str),
    OwnProcess,
}

/// CPU seconds so far of each process found, and of the machine.
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    processes: Vec<(&'static str, Option<f64>)>,
    machine_busy: Option<f64>,
}

pub fn sample() -> Sample {
    let processes = PROCESSES.iter().map(|(name, finder)| (*name, pid_of(*finder).and_then(process_seconds))).collect();
    Sample { at: Instant::now(), processes, machine_busy: machine_busy_seconds() }
}

/// Cores in use on average between two samples, by process and for the whole machine.
pub fn between(before: &Sample, after: &Sample) -> Value {
    let wall = after.at.duration_since(before.at).as_secs_f64().max(f64::EPSILON);
    let cores = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| ((b - a) / wall * 100.0).round() / 100.0);
    let mut out = serde_json::Map::new();
    for ((name, a), (_, b)) in before.processes.iter().zip(&after.processes) {
        out.insert((*name).to_owned(), json!(cores(*a, *b)));
    }
    out.insert("machine".into(), json!(cores(before.machine_busy, after.machine_busy)));
    out.insert("machine_cores".into(), json!(std::thread::available_parallelism().map_or(0, usize::from)));
    Value::Object(out)
}

fn pid_of(finder: Finder) -> Option<u32> {
    let wanted = match finder {
        Finder::OwnProcess => return Some(std::process::id()),
        Finder::Cmdline(wanted) => wanted,
    };
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).contains(wanted).then_some(pid)
    })
}

/// User and system time of a process and of its threads, in seconds (fields 14 and 15 of
/// `/proc/<pid>/stat`, counted after the command's closing parenthesis).
fn process_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

/// Busy time of all cores together (everything but idle and I/O wait), in seconds.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let idle = ticks.get(3)? + ticks.get(4)?;
    // (guest time is already counted in user time)
    let total: f64 = ticks.iter().take(8).sum();
    Some((total - idle) / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_bench_sees_its_own_cpu_time_grow_while_it_works() {
        let before = sample();
        let started = Instant::now();
        let mut x: u64 = 0;
        while started.elapsed().as_millis() < 1000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = sample();
        let used = between(&before, &after);
        let own = used["bench_and_billy"].as_f64().expect("its own process is always found on Linux");
        assert!(own > 0.1, "a busy loop keeps a core busy: {used}");
        assert!(used["machine"].as_f64().unwrap() >= own - 0.1, "{used}");
    }
}
