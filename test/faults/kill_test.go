//go:build faults

package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestKillNineWhileJobsRun SIGKILLs stargate-apiserver 10 times at random
// moments while 500 Jobs of every operation are created and run across both
// datacenters, restarting it each time. Every acknowledged Job must finish
// Succeeded with exactly one execution in its datacenter's ledger, and
// every acknowledged annotation write must still be there.
func TestKillNineWhileJobsRun(t *testing.T) {
	const jobs, kills = 500, 10
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("random seed %d", seed)
	createHardware(t, "k9", jobs/2)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var acknowledged []string
	var createFailures atomic.Int64
	creating := make(chan struct{})
	go func() { // 500 Jobs at about 10 a second, retried through the kills
		defer close(creating)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var wg sync.WaitGroup
		for i := range jobs {
			<-tick.C
			dc := datacenters[i%2]
			j := job(fmt.Sprintf("k9-%04d", i), fmt.Sprintf("k9-%04d", i/2), "kill", ops[(i/2)%len(ops)])
			wg.Go(func() {
				ok, failed := createUntilAcknowledged(ctx, sg, dc, j)
				createFailures.Add(int64(failed))
				if ok {
					mu.Lock()
					acknowledged = append(acknowledged, dc+"/"+j.Name)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}()

	// Annotation writes on one Hardware, each a higher number: the last
	// acknowledged one (or a later one) must survive.
	var lastAcked atomic.Int64
	writing := make(chan struct{})
	stopWriting := make(chan struct{})
	go func() {
		defer close(writing)
		for n := int64(1); ; n++ {
			select {
			case <-stopWriting:
				return
			case <-time.After(50 * time.Millisecond):
			}
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"faults.stargate.io/seq":"%d"}}}`, n)
			attempt, stop := context.WithTimeout(ctx, 5*time.Second)
			_, err := sg.StargateV1alpha1().Hardwares("dc-west").Patch(attempt, "k9-0000", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			stop()
			if err == nil {
				lastAcked.Store(n)
			}
		}
	}()

	var worst time.Duration
	for k := range kills {
		time.Sleep(time.Duration(1000+rng.IntN(5000)) * time.Millisecond)
		start := time.Now()
		if err := env.RestartStargate(); err != nil {
			t.Fatalf("restart %d: %v", k+1, err)
		}
		took := time.Since(start)
		worst = max(worst, took)
		t.Logf("kill %d: back and Available in %s", k+1, took.Round(time.Millisecond))
	}
	<-creating
	close(stopWriting)
	<-writing

	o := waitAndJudge(t, sg, "kill", acknowledged, 4*time.Minute)
	if len(acknowledged) != jobs {
		t.Errorf("%d of %d Jobs acknowledged before the deadline", len(acknowledged), jobs)
	}
	if o.Failed != 0 {
		t.Errorf("%d Jobs failed (%s); kill -9 of the server is no reason to fail a Job", o.Failed, reasons(o.FailedReasons))
	}
	hw, err := sg.StargateV1alpha1().Hardwares("dc-west").Get(context.Background(), "k9-0000", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := strconv.ParseInt(hw.Annotations["faults.stargate.io/seq"], 10, 64)
	lostWrites := 0
	if kept < lastAcked.Load() {
		lostWrites = 1
		t.Errorf("annotation write %d was acknowledged, the Hardware holds %d", lastAcked.Load(), kept)
	}
	record(t, row{Fault: "kill -9 of stargate-apiserver, random moments", Runs: kills, Jobs: o.Jobs,
		Lost: o.Lost + lostWrites, Duplicated: o.Duplicated, Stuck: o.Stuck, S5xx: 0,
		Recovery: worst.Round(100 * time.Millisecond).String(),
		Note: fmt.Sprintf("%d Succeeded; %d annotation writes acknowledged, last kept; %d create attempts refused while down",
			o.Succeeded, lastAcked.Load(), createFailures.Load())})
}
