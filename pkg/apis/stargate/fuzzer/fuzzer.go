// Package fuzzer holds the fuzz functions for the stargate.io types used by
// the scheme round-trip tests: they keep random objects within what defaulting
// leaves unchanged, so a decode never differs from the encode for that reason.
package fuzzer

import (
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/randfill"

	"stargate.io/stargate/pkg/apis/stargate"
)

// Funcs returns the fuzz functions of the stargate.io group.
var Funcs = func(codecs runtimeserializer.CodecFactory) []interface{} {
	return []interface{}{
		func(s *stargate.JobSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.BackoffLimit == nil {
				s.BackoffLimit = ptr.To(int32(3))
			}
		},
		// Campaigns as SetDefaults_CampaignSpec and SetDefaults_MaintenanceWindow leave them.
		func(s *stargate.CampaignSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.SkipUpToDate == nil && s.Operation == stargate.OperationRepave {
				s.SkipUpToDate = ptr.To(true)
			}
			if s.JobTemplate.BackoffLimit == nil {
				s.JobTemplate.BackoffLimit = ptr.To(int32(3))
			}
			if len(s.Waves) == 0 {
				s.Waves = []stargate.CampaignWave{{Size: intstr.FromString("100%")}}
			}
			if u := &s.MaxUnavailable; u.Global == nil && u.PerDatacenter == nil && u.PerFailureDomain == nil {
				u.Global = ptr.To(intstr.FromString("10%"))
			}
			if f := &s.FailurePolicy.MaxFailures; f.Global == nil && f.PerDatacenter == nil && f.PerWave == nil {
				f.Global = ptr.To(intstr.FromString("5%"))
			}
			if s.FailurePolicy.Action == "" {
				s.FailurePolicy.Action = stargate.CampaignFailurePause
			}
			if s.FailurePolicy.InFlight == "" {
				s.FailurePolicy.InFlight = stargate.CampaignInFlightFinish
			}
		},
		func(w *stargate.MaintenanceWindow, c randfill.Continue) {
			c.FillNoCustom(w)
			if w.TimeZone == "" {
				w.TimeZone = "UTC"
			}
		},
		func(s *stargate.DatacenterSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.MaxConcurrentJobs == nil {
				s.MaxConcurrentJobs = ptr.To(int32(10))
			}
		},
	}
}
