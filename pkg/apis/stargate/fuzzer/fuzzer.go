// Package fuzzer holds the fuzz functions for the stargate.io types used by
// the scheme round-trip tests: they keep random objects within what defaulting
// leaves unchanged, so a decode never differs from the encode for that reason.
package fuzzer

import (
	"fmt"

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
		func(s *stargate.CampaignSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			// What SetDefaults_CampaignSpec fills in.
			ops := []stargate.Operation{stargate.OperationRepave, stargate.OperationReboot, stargate.OperationPowerOff, stargate.OperationPowerOn}
			s.Operation = ops[c.Intn(len(ops))]
			if s.SkipUpToDate == nil && s.Operation == stargate.OperationRepave {
				s.SkipUpToDate = ptr.To(true)
			}
			if s.JobTemplate.BackoffLimit == nil {
				s.JobTemplate.BackoffLimit = ptr.To(int32(3))
			}
			if len(s.Waves) == 0 {
				s.Waves = []stargate.CampaignWave{{Size: intstr.FromString("100%")}}
			}
			for i := range s.Waves {
				s.Waves[i].Size = intOrPercent(c)
			}
			u := &s.MaxUnavailable
			u.Global, u.PerDatacenter, u.PerFailureDomain = ptr.To(intOrPercent(c)), nil, nil
			f := &s.FailurePolicy.MaxFailures
			f.Global, f.PerDatacenter, f.PerWave = ptr.To(intOrPercent(c)), nil, ptr.To(intOrPercent(c))
			s.FailurePolicy.Action = stargate.CampaignFailurePause
			s.FailurePolicy.InFlight = stargate.CampaignInFlightFinish
			for i := range s.MaintenanceWindows {
				if s.MaintenanceWindows[i].TimeZone == "" {
					s.MaintenanceWindows[i].TimeZone = "UTC"
				}
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

// intOrPercent is a random IntOrString of either kind (a random one of the
// int kind may carry a StrVal that does not survive the wire).
func intOrPercent(c randfill.Continue) intstr.IntOrString {
	if c.Bool() {
		return intstr.FromInt32(c.Int31n(1000))
	}
	return intstr.FromString(fmt.Sprintf("%d%%", c.Intn(101)))
}
