package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"

	"stargate.io/stargate/pkg/apis/stargate/fuzzer"
)

// TestRoundTripTypes encodes random objects of every kind to each wire form
// and back, and fails on any difference: a conversion or JSON tag that loses
// data fails here.
func TestRoundTripTypes(t *testing.T) {
	roundtrip.RoundTripTestForAPIGroup(t, Install, fuzzer.Funcs)
}
