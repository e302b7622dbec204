package jobs

import (
	"testing"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// BenchmarkSyncRunningJob is the controller's most frequent sync: a Running
// Job polled at its datacenter, still running there (fake clientset, fake
// datacenter).
func BenchmarkSyncRunningJob(b *testing.B) {
	h := newHarness(b, []string{"dc-west"}, datacenterObj("dc-west"), hardwareObj("dc-west", "server-001", "aa:bb:cc:dd:ee:01"),
		jobObj("dc-west", "reboot-1", "server-001", v1alpha1.OperationReboot))
	if _, err := h.sync("dc-west", "reboot-1"); err != nil {
		b.Fatal(err)
	}
	h.waitForCache("dc-west", "reboot-1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.c.sync(h.ctx, "dc-west/reboot-1"); err != nil {
			b.Fatal(err)
		}
	}
}
