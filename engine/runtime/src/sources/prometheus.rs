//! A Prometheus-compatible server (Prometheus, VictoriaMetrics, Thanos, Mimir) as a source
//! kind; its configuration lives beside the client in `setpoint-observe`.

use std::sync::Arc;

use setpoint_observe::{MetricSource, ObserveError, PrometheusConfig, PrometheusSource};

use super::{SourceContext, SourceSpec};

impl SourceSpec for PrometheusConfig {
    const KIND: &'static str = "prometheus";

    fn describe(&self) -> String {
        setpoint_secret::redact_url(&self.url)
    }

    fn build(&self, _: &SourceContext<'_>) -> Result<Arc<dyn MetricSource>, ObserveError> {
        Ok(Arc::new(PrometheusSource::new(self.clone())?))
    }
}
