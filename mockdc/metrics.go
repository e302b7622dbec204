package mockdc

import (
	"net/http"

	"k8s.io/component-base/metrics"
)

// serverMetrics are one mock datacenter's counters, in a registry of its own
// so that several mocks can live in one test process.
type serverMetrics struct {
	registry     metrics.KubeRegistry
	requests     *metrics.CounterVec
	jobsStarted  *metrics.CounterVec
	jobsFinished *metrics.CounterVec
	batchItems   *metrics.CounterVec
}

func newServerMetrics() *serverMetrics {
	m := &serverMetrics{
		registry: metrics.NewKubeRegistry(),
		requests: metrics.NewCounterVec(&metrics.CounterOpts{Namespace: "mockdc", Name: "requests_total",
			Help: "Requests by route and status code.", StabilityLevel: metrics.ALPHA}, []string{"route", "code"}),
		jobsStarted: metrics.NewCounterVec(&metrics.CounterOpts{Namespace: "mockdc", Name: "jobs_started_total",
			Help: "Jobs that started executing, by operation.", StabilityLevel: metrics.ALPHA}, []string{"operation"}),
		jobsFinished: metrics.NewCounterVec(&metrics.CounterOpts{Namespace: "mockdc", Name: "jobs_finished_total",
			Help: "Jobs that finished, by operation and final state.", StabilityLevel: metrics.ALPHA}, []string{"operation", "state"}),
		batchItems: metrics.NewCounterVec(&metrics.CounterOpts{Namespace: "mockdc", Name: "batch_items_total",
			Help: "Jobs listed by the changes feed and MACs asked about by machine lookups, by route.", StabilityLevel: metrics.ALPHA}, []string{"route"}),
	}
	m.registry.MustRegister(m.requests, m.jobsStarted, m.jobsFinished, m.batchItems)
	return m
}

func (m *serverMetrics) handler() http.Handler {
	return metrics.HandlerFor(m.registry, metrics.HandlerOpts{})
}
