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
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// TestEtcdKilledUnderWriteLoad SIGKILLs the external etcd while clients
// create Hardware, keeps it down for 5 seconds and starts it again on the
// same data. Stargate must say it is not ready while etcd is gone, be ready
// again by itself, have kept every create it acknowledged, and a watch
// opened before must have delivered every object of the final list.
func TestEtcdKilledUnderWriteLoad(t *testing.T) {
	const ns, label = "dc-west", "faults.stargate.io/run=etcd"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hw := sg.StargateV1alpha1().Hardwares(ns)
	start, err := hw.List(ctx, metav1.ListOptions{LabelSelector: label})
	if err != nil {
		t.Fatal(err)
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, start.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = label
			return hw.Watch(ctx, o)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var seenMu sync.Mutex
	seen := map[string]bool{}
	watchErrors := 0
	go func() {
		for ev := range w.ResultChan() {
			seenMu.Lock()
			if h, ok := ev.Object.(*v1alpha1.Hardware); ok && ev.Type == watch.Added {
				seen[h.Name] = true
			} else if ev.Type == watch.Error {
				watchErrors++
			}
			seenMu.Unlock()
		}
	}()

	// Four writers, each create bounded to 5s, until told to stop.
	var ackMu sync.Mutex
	var acknowledged []string
	var refused, answered5xx atomic.Int64
	var seq atomic.Int64
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for range 4 {
		writers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				h := hardware(fmt.Sprintf("et-%05d", seq.Add(1)))
				h.Labels = map[string]string{"faults.stargate.io/run": "etcd"}
				attempt, done := context.WithTimeout(ctx, 5*time.Second)
				_, err := hw.Create(attempt, h, metav1.CreateOptions{})
				done()
				if err == nil {
					ackMu.Lock()
					acknowledged = append(acknowledged, h.Name)
					ackMu.Unlock()
					continue
				}
				refused.Add(1)
				if is5xx(err) {
					answered5xx.Add(1)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}

	time.Sleep(3 * time.Second)
	env.Kill("etcd", true)
	killed := time.Now()
	unready := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return env.Ready(env.StargatePort) != nil, nil
	})
	if unready != nil {
		t.Errorf("Stargate still said ready 30s after etcd died")
	}
	t.Logf("unready %s after etcd died", time.Since(killed).Round(time.Millisecond))
	time.Sleep(max(0, 5*time.Second-time.Since(killed)))
	if err := env.StartEtcd(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return env.Ready(env.StargatePort) == nil, nil
	}); err != nil {
		t.Fatalf("Stargate not ready a minute after etcd came back")
	}
	recovery := time.Since(restarted)
	t.Logf("ready again %s after etcd restarted", recovery.Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	close(stop)
	writers.Wait()

	final, err := hw.List(ctx, metav1.ListOptions{LabelSelector: label})
	if err != nil {
		t.Fatal(err)
	}
	inFinal := map[string]bool{}
	for _, h := range final.Items {
		inFinal[h.Name] = true
	}
	lost := 0
	for _, name := range acknowledged {
		if !inFinal[name] {
			lost++
			t.Errorf("create of %s was acknowledged and is gone", name)
		}
	}
	missed := 0
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		seenMu.Lock()
		defer seenMu.Unlock()
		missed = 0
		for name := range inFinal {
			if !seen[name] {
				missed++
			}
		}
		return missed == 0, nil
	})
	if missed != 0 {
		t.Errorf("the watch never delivered %d of the %d objects in the final list", missed, len(inFinal))
	}
	if err := env.WaitAvailable(); err != nil {
		t.Fatalf("the APIService did not come back: %v", err)
	}
	seenMu.Lock()
	defer seenMu.Unlock()
	record(t, row{Fault: "external etcd SIGKILLed under write load, down 5s", Runs: 1, Jobs: 0,
		Lost: lost + missed, S5xx: int(answered5xx.Load()), Recovery: recovery.Round(10 * time.Millisecond).String(),
		Note: fmt.Sprintf("%d creates acknowledged, all kept; %d refused while etcd was down (%d of them 5xx: etcd unavailable); watch delivered all %d, %d error events; recovery = etcd back to /readyz",
			len(acknowledged), refused.Load(), answered5xx.Load(), len(inFinal), watchErrors)})
}
