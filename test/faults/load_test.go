//go:build faults

package faults

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/test/framework"
)

// TestSustainedLoad drives 3 minutes of mixed traffic at a fixed rate —
// per second 10 creates, 10 gets, 10 updates, 10 deletes, 4 lists, 1 repave,
// with 10 watches open — after a minute of the same to warm up (the watch
// cache keeps the last 75 seconds of events, so its memory grows that long,
// and what earlier tests left running settles),
// and wants zero errors, reports p99 per verb, and Stargate's memory (its
// live heap) at minute 3 within 10% of minute 1.
func TestSustainedLoad(t *testing.T) {
	const warmUp, measured, tick = time.Minute, 3 * time.Minute, 100 * time.Millisecond // 10 rounds a second
	const duration = warmUp + measured
	const pool = 20 // Hardware repaved in turn
	createHardware(t, "ld", pool)
	ctx, cancel := context.WithTimeout(context.Background(), duration+2*time.Minute)
	defer cancel()
	hw := sg.StargateV1alpha1().Hardwares("dc-west")

	var watchEvents atomic.Int64
	var watchErrs []string
	var watchMu sync.Mutex
	var stopping atomic.Bool // errors from closing the watches at the end are ours
	watchCtx, stopWatches := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	for range 10 {
		w, err := hw.Watch(watchCtx, metav1.ListOptions{LabelSelector: "faults.stargate.io/run=load"})
		if err != nil {
			t.Fatal(err)
		}
		watchers.Go(func() {
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					if stopping.Load() {
						continue
					}
					watchMu.Lock()
					watchErrs = append(watchErrs, fmt.Sprint(ev.Object))
					watchMu.Unlock()
					continue
				}
				watchEvents.Add(1)
			}
		})
	}

	var mu sync.Mutex
	latencies := map[string][]time.Duration{}
	var errs []string
	observe := func(verb string, start time.Time, err error) {
		mu.Lock()
		defer mu.Unlock()
		latencies[verb] = append(latencies[verb], time.Since(start))
		if err != nil && len(errs) < 20 {
			errs = append(errs, fmt.Sprintf("%s: %v", verb, err))
		}
		if err != nil {
			latencies["errors"] = append(latencies["errors"], 0)
		}
	}
	pid := env.PID("stargate-apiserver")
	// Memory is the live heap: what is left after a forced garbage
	// collection at the end of minute 1 and of minute 3. RSS, sampled every
	// 2 seconds (minutes 1 and 3 as means of their last 20 s), is reported
	// beside it; with Go it follows the heap's high-water mark, not what is held.
	var rssSamples []float64
	live1 := make(chan float64, 1)
	var liveErr atomic.Value
	begin := time.Now()
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var inflight sync.WaitGroup
	for round := 0; time.Since(begin) < duration; round++ {
		<-ticker.C
		if round%20 == 0 {
			rssSamples = append(rssSamples, framework.RSSMiB(pid))
		}
		if round == int((warmUp+time.Minute)/tick) {
			go func() { // not in the way of the fixed rate
				v, err := liveHeapMiB()
				if err != nil {
					liveErr.Store(err)
				}
				live1 <- v
			}()
		}
		inflight.Go(func() {
			name := fmt.Sprintf("ld-obj-%06d", round)
			h := hardware(name)
			h.Labels = map[string]string{"faults.stargate.io/run": "load"}
			start := time.Now()
			_, err := hw.Create(ctx, h, metav1.CreateOptions{})
			observe("create", start, err)
			if err != nil {
				return
			}
			start = time.Now()
			_, err = hw.Get(ctx, name, metav1.GetOptions{})
			observe("get", start, err)
			start = time.Now()
			_, err = hw.Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"inventory":{"location":"rack-9"}}}`), metav1.PatchOptions{})
			observe("update", start, err)
			start = time.Now()
			err = hw.Delete(ctx, name, metav1.DeleteOptions{})
			observe("delete", start, err)
		})
		if round%10 < 4 {
			inflight.Go(func() {
				start := time.Now()
				_, err := hw.List(ctx, metav1.ListOptions{LabelSelector: "faults.stargate.io/run=load", Limit: 100})
				observe("list", start, err)
			})
		}
		if round%10 == 0 {
			target := fmt.Sprintf("ld-%04d", (round/10)%pool)
			inflight.Go(func() {
				start := time.Now()
				body := &v1alpha1.RepaveRequest{Spec: v1alpha1.RepaveRequestSpec{TemplateRef: v1alpha1.LocalObjectReference{Name: "ubuntu"},
					TTLSecondsAfterFinished: ptr.To[int32](5)}}
				err := sg.StargateV1alpha1().RESTClient().Post().Namespace("dc-west").Resource("hardwares").Name(target).
					SubResource("repave").Body(body).Do(ctx).Error()
				observe("repave", start, err)
			})
		}
	}
	inflight.Wait()
	elapsed := time.Since(begin)
	// Each watch must see every labelled object's creation, update and deletion.
	mu.Lock()
	wantEvents := int64(10 * 3 * len(latencies["delete"]))
	mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); watchEvents.Load() < wantEvents && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	mean := func(from, to time.Duration) float64 { // samples are 2s apart
		window := rssSamples[min(int(from/(2*time.Second)), len(rssSamples)):min(int(to/(2*time.Second)), len(rssSamples))]
		total := 0.0
		for _, v := range window {
			total += v
		}
		return total / float64(max(1, len(window)))
	}
	rss1, rss3 := mean(warmUp+40*time.Second, warmUp+60*time.Second), mean(warmUp+160*time.Second, warmUp+180*time.Second)
	heap1 := <-live1
	heap3, err := liveHeapMiB()
	if err != nil || liveErr.Load() != nil {
		t.Fatalf("reading the live heap: %v %v", err, liveErr.Load())
	}
	t.Logf("RSS every 2s (MiB): %.0f", rssSamples)
	stopping.Store(true)
	stopWatches()
	watchers.Wait()

	mu.Lock()
	defer mu.Unlock()
	failures := len(latencies["errors"])
	delete(latencies, "errors")
	for _, e := range errs {
		t.Error(e)
	}
	for _, e := range watchErrs {
		t.Errorf("watch: %s", e)
	}
	if env.PID("stargate-apiserver") != pid {
		t.Error("stargate-apiserver restarted under the load")
	}
	var verbs []string
	total := 0
	for verb, d := range latencies {
		slices.Sort(d)
		total += len(d)
		verbs = append(verbs, fmt.Sprintf("%s %d, p50 %s, p99 %s", verb, len(d),
			d[len(d)/2].Round(100*time.Microsecond), d[len(d)*99/100].Round(100*time.Microsecond)))
	}
	sort.Strings(verbs)
	growth, rssGrowth := (heap3-heap1)/heap1, (rss3-rss1)/rss1
	t.Logf("%d requests in %s (%.0f/s); %s; watch events %d; live heap %.0f MiB after minute 1, %.0f MiB after minute 3 (%+.1f%%); RSS %.0f → %.0f MiB (%+.1f%%)",
		total, elapsed.Round(time.Second), float64(total)/elapsed.Seconds(), strings.Join(verbs, "; "), watchEvents.Load(), heap1, heap3, 100*growth, rss1, rss3, 100*rssGrowth)
	// A leak grows the heap; one that shrinks (caches from the tests before
	// settling, a sweep's pages freed) is no defect, so only growth fails.
	if growth > 0.10 {
		t.Errorf("the live heap grew %+.1f%% from minute 1 to minute 3, want at most 10%%", 100*growth)
	}
	if watchEvents.Load() < wantEvents {
		t.Errorf("the 10 watches saw %d events, want at least %d", watchEvents.Load(), wantEvents)
	}
	record(t, row{Fault: "sustained mixed load, 3 min at a fixed rate (after 1 min warm-up), 10 watches", Runs: total, S5xx: failures, Recovery: "-",
		Note: fmt.Sprintf("errors %d; %s; live heap %.0f → %.0f MiB (%+.1f%%), RSS %.0f → %.0f MiB (%+.1f%%)",
			failures, strings.Join(verbs, "; "), heap1, heap3, 100*growth, rss1, rss3, 100*rssGrowth)})
}

// liveHeapMiB forces a garbage collection in stargate-apiserver (the heap
// profile endpoint with gc=1) and reads the heap it still holds.
func liveHeapMiB() (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sg.Discovery().RESTClient().Get().AbsPath("/debug/pprof/heap").Param("gc", "1").DoRaw(ctx); err != nil {
		return 0, err
	}
	bytes, err := metricValue(sg, "go_memstats_heap_alloc_bytes")
	return bytes / (1 << 20), err
}
