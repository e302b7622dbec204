//go:build faults

package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
)

// TestPausedLeader runs two replicas on one etcd, SIGSTOPs the one leading
// the controllers while Jobs run, until well past its lease, and SIGCONTs
// it. The other must take over; no Job may run twice; once the paused one
// is back, only one replica may lead.
func TestPausedLeader(t *testing.T) {
	const perRound = 200
	port2, err := env.StartReplica("stargate-apiserver-2")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Kill("stargate-apiserver-2", false)
	ports := map[string]int{"stargate-apiserver": env.StargatePort, "stargate-apiserver-2": port2}
	clients := map[string]clientset.Interface{"stargate-apiserver": sg}
	if clients["stargate-apiserver-2"], err = clientset.NewForConfig(env.RESTConfig("admin", port2)); err != nil {
		t.Fatal(err)
	}
	leaders := func() []string {
		var out []string
		for name, port := range ports {
			if leading, err := isLeader(clients[name], port); err == nil && leading {
				out = append(out, name)
			}
		}
		return out
	}
	var leader, other string
	if err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		l := leaders()
		if len(l) == 1 {
			leader = l[0]
		}
		return len(l) == 1, nil
	}); err != nil {
		t.Fatalf("no single leader among the two replicas: %v", leaders())
	}
	for name := range ports {
		if name != leader {
			other = name
		}
	}
	t.Logf("%s leads; pausing it while Jobs run", leader)
	c := clients[other]
	createHardware(t, "ps", perRound/2)

	round := func(name string, pause func()) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var mu sync.Mutex
		var acknowledged []string
		var wg sync.WaitGroup
		for i := range perRound {
			if i == perRound/4 && pause != nil {
				pause()
			}
			time.Sleep(25 * time.Millisecond)
			dc := datacenters[i%2]
			j := job(fmt.Sprintf("%s-%04d", name, i), fmt.Sprintf("ps-%04d", i/2), name, ops[i%3]) // no repave: quick
			wg.Go(func() {
				if ok, _ := createUntilAcknowledged(ctx, c, dc, j); ok {
					mu.Lock()
					acknowledged = append(acknowledged, dc+"/"+j.Name)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return acknowledged
	}

	var takeover time.Duration
	acknowledged := round("pause", func() {
		if err := env.Signal(leader, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			leading, err := isLeader(c, ports[other])
			return err == nil && leading, nil
		}); err != nil {
			_ = env.Signal(leader, syscall.SIGCONT)
			t.Fatalf("%s did not take over from the paused %s", other, leader)
		}
		takeover = time.Since(stopped)
		t.Logf("%s took over %s after the pause", other, takeover.Round(time.Millisecond))
		// Well past the lease (3s) before the old leader wakes up.
		time.Sleep(max(0, 8*time.Second-time.Since(stopped)))
		if err := env.Signal(leader, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	})
	o1 := waitAndJudge(t, c, "pause", acknowledged, 3*time.Minute)

	// After the wake-up: exactly one leader at every look, and Jobs still run once.
	both := 0
	for range 20 {
		if l := leaders(); len(l) > 1 {
			both++
			t.Errorf("two replicas lead at once: %v", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if l := leaders(); len(l) != 1 {
		t.Errorf("leaders after the wake-up: %v, want exactly one", l)
	}
	if logs, err := env.Logs(); err != nil {
		t.Error(err)
	} else if !strings.Contains(string(logs[leader]), "Lost the leader lease") {
		t.Errorf("the paused %s never logged that it lost the lease", leader)
	}
	o2 := waitAndJudge(t, c, "after-pause", round("after-pause", nil), 3*time.Minute)

	if o1.Failed+o2.Failed != 0 {
		t.Errorf("Jobs failed: %s %s", reasons(o1.FailedReasons), reasons(o2.FailedReasons))
	}
	record(t, row{Fault: "leader SIGSTOPped past its lease, then SIGCONT (2 replicas)", Runs: 1, Jobs: o1.Jobs + o2.Jobs,
		Lost: o1.Lost + o2.Lost, Duplicated: o1.Duplicated + o2.Duplicated, Stuck: o1.Stuck + o2.Stuck,
		Recovery: takeover.Round(100 * time.Millisecond).String(),
		Note:     fmt.Sprintf("recovery = pause to takeover (lease 3s); two leaders seen %d times after SIGCONT", both)})
}

// isLeader reads stargate_controllers_leader from a replica's /metrics.
func isLeader(c clientset.Interface, port int) (bool, error) {
	v, err := metricValue(c, "stargate_controllers_leader")
	if err != nil {
		return false, fmt.Errorf("port %d: %w", port, err)
	}
	return v == 1, nil
}
