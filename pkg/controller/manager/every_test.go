package manager

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/component-base/metrics/testutil"

	"stargate.io/stargate/pkg/controller/sharding"
)

// Forget then Want of one key (a Campaign deleted and created again under
// its name) starts the second acquire only once the first returned.
func TestForgetThenWantDrivesOneAtATime(t *testing.T) {
	e := newEveryDatacenter(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running, most atomic.Int32
	var wg sync.WaitGroup
	acquire := func(ctx context.Context, ns string) {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond) // the worker finishing its sync
		running.Add(-1)
	}
	wg.Go(func() { e.Run(ctx, acquire) })
	e.Want("campaign.c")
	time.Sleep(50 * time.Millisecond)
	e.Forget("campaign.c")
	e.Want("campaign.c")
	time.Sleep(200 * time.Millisecond)
	v, err := testutil.GetGaugeMetricValue(sharding.DatacenterDriven.WithLabelValues("campaign.c"))
	t.Logf("gauge after the first acquire returned: %v %v", v, err)
	if most.Load() > 1 {
		t.Errorf("%d acquires of campaign.c at once", most.Load())
	}
	cancel()
	wg.Wait()
}
