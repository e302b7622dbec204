// Package fuzzer holds the fuzz functions for the stargate.io types used by
// the scheme round-trip tests: they keep random objects within what defaulting
// leaves unchanged, so a decode never differs from the encode for that reason.
package fuzzer

import (
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
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
		func(s *stargate.DatacenterSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.MaxConcurrentJobs == nil {
				s.MaxConcurrentJobs = ptr.To(int32(10))
			}
		},
	}
}
