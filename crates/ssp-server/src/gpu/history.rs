//! The last hour of each GPU's telemetry, for the GPU map and `ssp gpu usage --history`.
//!
//! Kept in memory only: it is a view of the recent past, cheap to lose on a restart, and at
//! one sample every 10 s an hour is 360 points per GPU. The API never sends the raw points:
//! [`History::buckets`] sums them up per minute (average and peak utilization, peak memory),
//! so a page draws 60 bars per GPU whatever the sample interval. Pure: the caller gives the
//! times.

use std::collections::{BTreeMap, VecDeque};

use ssp_gpu::GpuSample;

/// How far back the history reaches.
pub const WINDOW_SECS: i64 = 3600;

/// One sample of one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    at: i64,
    utilization: u32,
    memory_used: u64,
}

/// One bucket of a GPU's history: the samples taken in `[start, start + bucket_secs)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Start, Unix seconds (a multiple of the bucket length).
    pub start: i64,
    /// Mean utilization of the samples, percent (rounded).
    pub utilization_avg: u32,
    /// Highest utilization sampled, percent.
    pub utilization_max: u32,
    /// Most memory in use in any sample, bytes.
    pub memory_used_max: u64,
    /// How many samples it sums up.
    pub samples: u32,
}

/// Samples per GPU index, oldest first, none older than [`WINDOW_SECS`] before the newest.
#[derive(Debug, Default)]
pub struct History {
    points: BTreeMap<u32, VecDeque<Point>>,
}

impl History {
    /// Adds the samples taken at `at` and forgets what has left the window. A GPU that is no
    /// longer sampled keeps its points until they age out.
    pub fn record(&mut self, at: i64, samples: &[GpuSample]) {
        for sample in samples {
            let points = self.points.entry(sample.index).or_default();
            // A clock stepped back must not leave points out of order (buckets assume order).
            if points.back().is_some_and(|last| last.at > at) {
                points.clear();
            }
            points.push_back(Point { at, utilization: sample.utilization, memory_used: sample.memory_used });
        }
        let oldest = at - WINDOW_SECS;
        for points in self.points.values_mut() {
            while points.front().is_some_and(|p| p.at < oldest) {
                points.pop_front();
            }
        }
        self.points.retain(|_, points| !points.is_empty());
    }

    /// Each GPU's samples of the window ending at `now`, in buckets of `bucket_secs` aligned to
    /// multiples of it, oldest first; a bucket without samples is left out (the sampler was
    /// down, or the GPU unseen), so a gap stays a gap rather than reading as idle.
    pub fn buckets(&self, now: i64, bucket_secs: i64) -> BTreeMap<u32, Vec<Bucket>> {
        let bucket_secs = bucket_secs.max(1);
        let oldest = now - WINDOW_SECS;
        let mut out = BTreeMap::new();
        for (index, points) in &self.points {
            let mut buckets: Vec<Bucket> = Vec::new();
            let mut utilization_sum = 0u64;
            for point in points.iter().filter(|p| p.at >= oldest && p.at <= now) {
                let start = point.at.div_euclid(bucket_secs) * bucket_secs;
                match buckets.last_mut() {
                    Some(bucket) if bucket.start == start => {
                        bucket.samples += 1;
                        utilization_sum += u64::from(point.utilization);
                        bucket.utilization_max = bucket.utilization_max.max(point.utilization);
                        bucket.memory_used_max = bucket.memory_used_max.max(point.memory_used);
                    }
                    _ => {
                        close(buckets.last_mut(), utilization_sum);
                        utilization_sum = u64::from(point.utilization);
                        buckets.push(Bucket {
                            start,
                            utilization_avg: 0,
                            utilization_max: point.utilization,
                            memory_used_max: point.memory_used,
                            samples: 1,
                        });
                    }
                }
            }
            close(buckets.last_mut(), utilization_sum);
            if !buckets.is_empty() {
                out.insert(*index, buckets);
            }
        }
        out
    }
}

/// Sets a finished bucket's mean from the sum of its samples' utilization.
fn close(bucket: Option<&mut Bucket>, utilization_sum: u64) {
    if let Some(bucket) = bucket {
        let samples = u64::from(bucket.samples.max(1));
        bucket.utilization_avg = u32::try_from((utilization_sum + samples / 2) / samples).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(index: u32, utilization: u32, memory_used: u64) -> GpuSample {
        GpuSample { index, utilization, memory_used, processes: Vec::new() }
    }

    #[test]
    fn samples_are_summed_up_per_aligned_bucket() {
        let mut history = History::default();
        // (at, gpu0 utilization, gpu0 memory, gpu1 utilization)
        let table: [(i64, u32, u64, u32); 5] =
            [(6000, 10, 100, 0), (6010, 20, 300, 0), (6050, 31, 200, 90), (6060, 50, 50, 90), (6190, 0, 0, 5)];
        for (at, u0, m0, u1) in table {
            history.record(at, &[sample(0, u0, m0), sample(1, u1, 0)]);
        }
        let buckets = history.buckets(6200, 60);
        // gpu0: [6000,6060): 10,20,31 → avg 20 (20.33), max 31, memory 300; [6060,6120): 50;
        // 6120–6180 had no sample and is left out; [6180,6240): 0.
        let gpu0: Vec<(i64, u32, u32, u64, u32)> = buckets[&0]
            .iter()
            .map(|b| (b.start, b.utilization_avg, b.utilization_max, b.memory_used_max, b.samples))
            .collect();
        assert_eq!(gpu0, vec![(6000, 20, 31, 300, 3), (6060, 50, 50, 50, 1), (6180, 0, 0, 0, 1)]);
        let gpu1: Vec<(i64, u32)> = buckets[&1].iter().map(|b| (b.start, b.utilization_avg)).collect();
        // 0, 0, 90 → 30; 90; 5.
        assert_eq!(gpu1, vec![(6000, 30), (6060, 90), (6180, 5)]);
    }

    #[test]
    fn the_window_is_an_hour_and_old_gpus_age_out() {
        let mut history = History::default();
        history.record(0, &[sample(0, 100, 1), sample(7, 40, 1)]);
        history.record(1800, &[sample(0, 50, 1)]);
        // GPU 7 vanished (a card taken out): its point stays until it is an hour old.
        assert_eq!(history.buckets(1800, 60).keys().copied().collect::<Vec<_>>(), vec![0, 7]);
        history.record(3601, &[sample(0, 0, 1)]);
        let buckets = history.buckets(3601, 60);
        assert_eq!(buckets.keys().copied().collect::<Vec<_>>(), vec![0]);
        assert_eq!(buckets[&0].iter().map(|b| b.utilization_max).collect::<Vec<_>>(), vec![50, 0]);
        // Asked later than the last sample, the window moves on even without new samples.
        assert!(history.buckets(3601 + WINDOW_SECS + 1, 60).is_empty());
    }

    #[test]
    fn a_clock_stepped_back_starts_the_gpu_over() {
        let mut history = History::default();
        history.record(5000, &[sample(0, 80, 1)]);
        history.record(4000, &[sample(0, 10, 1)]);
        let buckets = history.buckets(4000, 60);
        assert_eq!(buckets[&0].len(), 1);
        assert_eq!(buckets[&0][0].utilization_max, 10);
    }

    #[test]
    fn a_bucket_length_of_zero_is_taken_as_one_second() {
        let mut history = History::default();
        history.record(10, &[sample(0, 1, 1)]);
        history.record(11, &[sample(0, 3, 1)]);
        assert_eq!(history.buckets(11, 0)[&0].len(), 2);
    }
}
