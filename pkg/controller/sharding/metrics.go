package sharding

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// DatacenterDriven is 1, labelled with the datacenter (namespace), on the
// replica that drives that datacenter now; the other replicas have no series
// for it. Summed over replicas it is 1 per driven datacenter and 0 during a
// handoff, except that a replica paused past its lease shows 1 until it
// notices.
var DatacenterDriven = metrics.NewGaugeVec(&metrics.GaugeOpts{
	Namespace: "stargate", Name: "datacenter_driven",
	Help:           "1 on the replica whose controllers drive the datacenter (namespace) now; absent on the other replicas.",
	StabilityLevel: metrics.ALPHA,
}, []string{"datacenter"})

var registerOnce sync.Once

// RegisterMetrics adds the sharding metrics to the legacy registry, which the
// API server serves on /metrics; calling it again is a no-op.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(DatacenterDriven)
	})
}
