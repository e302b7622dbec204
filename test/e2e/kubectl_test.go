//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// TestDiscoveryThroughTheAggregator: kubectl sees stargate.io like any group.
func TestDiscoveryThroughTheAggregator(t *testing.T) {
	out := env.ok(t, "admin", "api-resources", "--api-group=stargate.io")
	for _, want := range []string{"hardwares", "hw", "templates", "jobs", "datacenters", "stargate.io/v1alpha1"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl api-resources lacks %q:\n%s", want, out)
		}
	}
	if v := env.ok(t, "admin", "version", "-o", "json"); !strings.Contains(v, `"gitVersion": "v1.37.2"`) {
		t.Errorf("kubectl version does not report v1.37.2:\n%s", v)
	}
}
