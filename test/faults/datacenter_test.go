//go:build faults

package faults

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// TestDatacenterErrorsAndDroppedAnswers runs 200 Jobs while both mock
// datacenters answer 20% of requests 500 and drop the answer to 5% of the
// submissions they accepted: every Job must finish, succeeded or failed with
// a reason, and none may run twice (the retried submissions carry the same
// idempotency key).
func TestDatacenterErrorsAndDroppedAnswers(t *testing.T) {
	const jobs = 200
	createHardware(t, "df", jobs/2)
	for _, dc := range datacenters {
		if err := env.SetFaults(dc, mockdc.Faults{ErrorRate: 0.2, DropAfterAcceptRate: 0.05}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := env.SetFaults(dc, mockdc.Faults{}); err != nil {
				t.Error(err)
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var acknowledged []string
	for i := range jobs {
		time.Sleep(50 * time.Millisecond)
		dc := datacenters[i%2]
		j := job(fmt.Sprintf("df-%04d", i), fmt.Sprintf("df-%04d", i/2), "dc-faults", ops[(i/2)%len(ops)])
		if ok, _ := createUntilAcknowledged(ctx, sg, dc, j); ok {
			acknowledged = append(acknowledged, dc+"/"+j.Name)
		}
	}
	o := waitAndJudge(t, sg, "dc-faults", acknowledged, 3*time.Minute)
	// Proof the faults struck: the mocks' own counts of 500s they sent and of
	// submissions answered as replays (a retry after a dropped answer).
	var errors500, replays float64
	for _, dc := range datacenters {
		n, err := env.MockCounter(dc, "mockdc_requests_total", `code="500"`)
		if err != nil {
			t.Fatal(err)
		}
		r, err := env.MockCounter(dc, "mockdc_requests_total", `code="200"`, `route="/v1/jobs"`)
		if err != nil {
			t.Fatal(err)
		}
		errors500, replays = errors500+n, replays+r
	}
	record(t, row{Fault: "datacenters: 20% 500s, 5% answers dropped after accept", Runs: 1, Jobs: o.Jobs,
		Lost: o.Lost, Duplicated: o.Duplicated, Stuck: o.Stuck, Recovery: "-",
		Note: fmt.Sprintf("%d Succeeded, %d Failed (%s); the mocks answered 500 %.0f times and replayed %.0f submissions whose answer they had dropped",
			o.Succeeded, o.Failed, reasons(o.FailedReasons), errors500, replays)})
	if errors500 == 0 || replays == 0 {
		t.Error("the faults were not exercised")
	}
}

// TestDatacenterOutage takes dc-east down (every request 503) for 60
// seconds while dc-west keeps working under a closed-loop load: dc-west's
// throughput during the outage must be at least 80% of its throughput
// before, and the Jobs sent to dc-east meanwhile must finish once it is back.
func TestDatacenterOutage(t *testing.T) {
	const workers, eastJobs = 16, 40
	const normalWindow, outage = 20 * time.Second, 60 * time.Second
	createHardware(t, "do", eastJobs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Each worker repeats: reboot its own dc-west Hardware, wait for the
	// Job to finish. completed counts finished Jobs.
	var completed, seq atomic.Int64
	var westMu sync.Mutex
	var westJobs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("dw-%05d", seq.Add(1))
				j := job(name, fmt.Sprintf("do-%04d", w), "outage-west", v1alpha1.OperationReboot)
				if ok, _ := createUntilAcknowledged(ctx, sg, "dc-west", j); !ok {
					return
				}
				westMu.Lock()
				westJobs = append(westJobs, "dc-west/"+name)
				westMu.Unlock()
				for ctx.Err() == nil {
					got, err := sg.StargateV1alpha1().Jobs("dc-west").Get(ctx, name, metav1.GetOptions{})
					if err == nil && finished(got) {
						completed.Add(1)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	rate := func(window time.Duration) float64 {
		before := completed.Load()
		time.Sleep(window)
		return float64(completed.Load()-before) / window.Seconds()
	}
	time.Sleep(3 * time.Second) // warm up
	normal := rate(normalWindow)

	if err := env.SetFaults("dc-east", mockdc.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	var eastAcked []string
	for i := range eastJobs {
		j := job(fmt.Sprintf("de-%04d", i), fmt.Sprintf("do-%04d", i), "outage-east", ops[i%3])
		if ok, _ := createUntilAcknowledged(ctx, sg, "dc-east", j); ok {
			eastAcked = append(eastAcked, "dc-east/"+j.Name)
		}
	}
	during := rate(outage - 0)
	if err := env.SetFaults("dc-east", mockdc.Faults{}); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	close(stop)
	wg.Wait()
	east := waitAndJudge(t, sg, "outage-east", eastAcked, 2*time.Minute)
	eastDone := time.Since(back)
	west := waitAndJudge(t, sg, "outage-west", westJobs, time.Minute)

	ratio := during / normal
	t.Logf("dc-west: %.1f Jobs/s before, %.1f Jobs/s during dc-east's outage (%.2fx)", normal, during, ratio)
	if ratio < 0.8 {
		t.Errorf("dc-west's throughput fell to %.2fx of normal during dc-east's outage, want >= 0.8x", ratio)
	}
	if east.Failed != 0 {
		t.Errorf("%d dc-east Jobs failed over a 60s outage (%s); they should wait for the datacenter", east.Failed, reasons(east.FailedReasons))
	}
	record(t, row{Fault: "dc-east down 60s (all 503) while dc-west works", Runs: 1, Jobs: east.Jobs + west.Jobs,
		Lost: east.Lost + west.Lost, Duplicated: east.Duplicated + west.Duplicated, Stuck: east.Stuck + west.Stuck,
		Recovery: eastDone.Round(100 * time.Millisecond).String(),
		Note: fmt.Sprintf("dc-west %.1f Jobs/s before, %.1f during (%.2fx, target >= 0.8x); dc-east's %d Jobs %d Succeeded; recovery = outage end to all dc-east Jobs done",
			normal, during, ratio, east.Jobs, east.Succeeded)})
}
