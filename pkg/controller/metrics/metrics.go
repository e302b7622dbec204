// Package metrics holds the controllers' Prometheus metrics. They live in
// component-base's legacy registry, which the generic API server serves on
// /metrics (behind authorization); the workqueue import adds each queue's
// depth, latency and retries as workqueue_* metrics named after the queue.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/workqueue" // workqueue_* metrics
)

const namespace = "stargate"

var (
	// JobsTotal counts Jobs that ended, by datacenter, operation and result
	// (succeeded or failed).
	JobsTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "jobs_total",
		Help:           "Jobs that reached Succeeded or Failed, by datacenter, operation and result.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"datacenter", "operation", "result"})

	// JobDuration is how long Jobs took from creation to their end: what an
	// operator waits, including time spent waiting for the datacenter.
	JobDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: namespace, Name: "job_duration_seconds",
		Help:           "Time from a Job's creation to its end, by datacenter, operation and result.",
		Buckets:        metrics.ExponentialBuckets(0.25, 2, 16), // 0.25 s to ~2.3 h
		StabilityLevel: metrics.ALPHA,
	}, []string{"datacenter", "operation", "result"})

	// DatacenterRequestDuration times every HTTP attempt to a datacenter API.
	DatacenterRequestDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: namespace, Name: "datacenter_request_duration_seconds",
		Help:           "Duration of each HTTP attempt to a datacenter API, by datacenter and status code (\"error\" when no answer came).",
		Buckets:        metrics.ExponentialBuckets(0.001, 2, 16), // 1 ms to ~33 s
		StabilityLevel: metrics.ALPHA,
	}, []string{"datacenter", "code"})

	// DatacenterUp is 1 while a datacenter answers its health check.
	DatacenterUp = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace: namespace, Name: "datacenter_up",
		Help:           "1 when the datacenter API answered its last health check, 0 when it did not.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"datacenter"})

	// JobsActive is the number of Jobs Running in each datacenter.
	JobsActive = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace: namespace, Name: "jobs_active",
		Help:           "Jobs Running in each datacenter.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"datacenter"})

	// SyncPanics counts syncs that panicked (and were retried): a bug to report.
	SyncPanics = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: namespace, Name: "controller_sync_panics_total",
		Help:           "Controller syncs that panicked; each is logged with its stack and retried with backoff.",
		StabilityLevel: metrics.ALPHA,
	})
)

var registerOnce sync.Once

// Register adds the metrics to the legacy registry; calling it again is a no-op.
func Register() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(JobsTotal, JobDuration, DatacenterRequestDuration, DatacenterUp, JobsActive, SyncPanics)
	})
}

// ObserveDatacenterRequest records one HTTP attempt to datacenter dc.
func ObserveDatacenterRequest(dc string, code int, elapsed time.Duration) {
	label := "error"
	if code > 0 {
		label = strconv.Itoa(code)
	}
	DatacenterRequestDuration.WithLabelValues(dc, label).Observe(elapsed.Seconds())
}
