//! `tally_fsync_latency_seconds`: the storage seam's fsync histogram (`tally_log`) in the
//! exposition, as a histogram whose buckets were counted elsewhere.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use tally_log::FsyncLatency;

#[derive(Debug)]
pub(crate) struct FsyncHistogram(pub FsyncLatency);

impl EncodeMetric for FsyncHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // prometheus-client writes `le="+Inf"` for a bound of f64::MAX.
        let buckets: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .map(|&(b, c)| (if b.is_infinite() { f64::MAX } else { b }, c))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum_seconds, self.0.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
