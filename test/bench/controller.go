package main

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/test/framework"
)

var datacenters = []string{"dc-west", "dc-east"}

// controllerSetup creates both Datacenters (no concurrency limit to speak of)
// and controllerJobs/2 Hardware in each.
func (b *bench) controllerSetup(ctx context.Context) error {
	for _, dc := range datacenters {
		if err := b.ensureNamespace(ctx, dc); err != nil {
			return err
		}
		if _, err := b.sg.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: dc},
			Spec:       v1alpha1.DatacenterSpec{Endpoint: b.c.MockDC[dc], MaxConcurrentJobs: ptr.To[int32](100000)},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := b.createMany(ctx, b.paths[0], dc, b.sz.controllerJobs/2, 32, 512); err != nil {
			return err
		}
	}
	return nil
}

// jobRound creates one reboot Job per Hardware (names prefixed by round),
// paced at perSecond (0: as fast as concurrency 32 goes), and waits until all
// Succeeded. It returns the wall time and each Job's create-answered time.
func (b *bench) jobRound(ctx context.Context, round string, n int, perSecond float64) (time.Duration, map[types.UID]time.Time, error) {
	selector := "bench-round=" + round
	w, err := b.sg.StargateV1alpha1().Jobs("").Watch(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, nil, err
	}
	defer func() { w.Stop() }()
	acked := map[types.UID]time.Time{}
	var mu sync.Mutex
	var tick <-chan time.Time
	workers := 32
	if perSecond > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / perSecond))
		defer t.Stop()
		tick, workers = t.C, 1
	}
	start := time.Now()
	created := make(chan error, 1)
	go func() {
		created <- framework.FanOut(ctx, n, workers, func(i int) error {
			if tick != nil {
				<-tick
			}
			dc := datacenters[i%2]
			job := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", round, i), Labels: map[string]string{"bench-round": round}},
				Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: fmt.Sprintf("hw-%06d", i/2)}, Operation: v1alpha1.OperationReboot}}
			got, err := b.sg.StargateV1alpha1().Jobs(dc).Create(ctx, job, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			mu.Lock()
			acked[got.UID] = time.Now()
			mu.Unlock()
			return nil
		})
	}()
	done := map[string]bool{}
	timeout := time.After(5 * time.Minute)
	for len(done) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				// The server ended the watch: catch up with a list and
				// watch again from there.
				if ok {
					fmt.Printf("   (watch error: %v; resuming)\n", ev.Object)
				}
				w.Stop()
				list, err := b.sg.StargateV1alpha1().Jobs("").List(ctx, metav1.ListOptions{LabelSelector: selector})
				if err != nil {
					return 0, nil, err
				}
				for _, j := range list.Items {
					if j.Status.Phase == v1alpha1.JobSucceeded {
						done[j.Namespace+"/"+j.Name] = true
					}
				}
				if w, err = b.sg.StargateV1alpha1().Jobs("").Watch(ctx, metav1.ListOptions{LabelSelector: selector,
					ResourceVersion: list.ResourceVersion}); err != nil {
					return 0, nil, err
				}
				continue
			}
			if j, isJob := ev.Object.(*v1alpha1.Job); isJob && ev.Type != watch.Deleted {
				if j.Status.Phase == v1alpha1.JobFailed {
					return 0, nil, fmt.Errorf("job %s/%s failed: %s", j.Namespace, j.Name, j.Status.Message)
				}
				if j.Status.Phase == v1alpha1.JobSucceeded {
					done[j.Namespace+"/"+j.Name] = true
				}
			}
		case err := <-created:
			if err != nil {
				return 0, nil, err
			}
			created = nil // all created; a nil channel is never ready again
		case <-timeout:
			return 0, nil, fmt.Errorf("round %s: %d of %d Jobs succeeded in 5 minutes", round, len(done), n)
		}
	}
	took := time.Since(start)
	if created != nil {
		if err := <-created; err != nil {
			return 0, nil, err
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return took, acked, nil
}

// submitLatencies pairs each Job's create answer with the time its
// datacenter started it (the mock's ledger).
func (b *bench) submitLatencies(acked map[types.UID]time.Time) ([]time.Duration, error) {
	var out []time.Duration
	for _, dc := range datacenters {
		ledger, err := b.c.Ledger(dc)
		if err != nil {
			return nil, err
		}
		seen := map[string]int{}
		for _, e := range ledger {
			seen[e.IdempotencyKey]++
			if t, ok := acked[types.UID(e.IdempotencyKey)]; ok {
				out = append(out, max(0, e.StartedAt.Sub(t)))
			}
		}
		for key, n := range seen {
			if n > 1 {
				return nil, fmt.Errorf("%s ran job %s %d times", dc, key, n)
			}
		}
	}
	if len(out) != len(acked) {
		return nil, fmt.Errorf("%d of %d Jobs are in the ledgers", len(out), len(acked))
	}
	return out, nil
}

// writes is Stargate's count of write requests served so far (its own
// apiserver_request_total: the controller's loopback writes and clients').
func (b *bench) writes(ctx context.Context) (float64, error) {
	raw, err := b.sg.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	total := 0.0
	s := bufio.NewScanner(strings.NewReader(string(raw)))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		for _, verb := range []string{`verb="POST"`, `verb="PUT"`, `verb="PATCH"`, `verb="DELETE"`} {
			if strings.Contains(line, verb) {
				v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				total += v
			}
		}
	}
	return total, nil
}

// controller runs controllerJobs zero-time reboots across two mock
// datacenters, reps times, then a round paced at 50 Jobs/s.
func (b *bench) controller(ctx context.Context) error {
	if err := b.controllerSetup(ctx); err != nil {
		return err
	}
	n := b.sz.controllerJobs
	var rate, perJob, p50, p99, ratio sample
	top := b.sz.concurrencies[len(b.sz.concurrencies)-1]
	ceiling := b.ceiling[top].median()
	for rep := range b.sz.reps {
		before, err := b.writes(ctx)
		if err != nil {
			return err
		}
		took, acked, err := b.jobRound(ctx, fmt.Sprintf("r%d", rep), n, 0)
		if err != nil {
			return err
		}
		after, err := b.writes(ctx)
		if err != nil {
			return err
		}
		lat, err := b.submitLatencies(acked)
		if err != nil {
			return err
		}
		jobsPerSec := float64(n) / took.Seconds()
		w := (after - before) / float64(n)
		rate, perJob = append(rate, jobsPerSec), append(perJob, w)
		p50 = append(p50, float64(percentile(lat, 50).Microseconds())/1000)
		p99 = append(p99, float64(percentile(lat, 99).Microseconds())/1000)
		ratio = append(ratio, jobsPerSec*w/ceiling)
		b.finishedJobs += n
	}
	section := fmt.Sprintf("5. Controller: %d reboot Jobs across 2 mock datacenters, zero operation time", n)
	b.add(row{section: section, name: "Jobs completed per second (create of the first to Succeeded of the last)", value: rate, unit: "/s"})
	b.add(row{section: section, name: "API writes per Job (Stargate's apiserver_request_total, all write verbs)", value: perJob, unit: ""})
	b.add(row{section: section, name: "create-to-datacenter-submit p50 (at full speed)", value: p50, unit: "ms"})
	b.add(row{section: section, name: "create-to-datacenter-submit p99 (at full speed)", value: p99, unit: "ms"})
	b.add(row{section: section, name: fmt.Sprintf("jobs/s x writes per Job / etcd ceiling at concurrency %d", top), value: ratio, unit: "",
		target: ">= 0.5", pass: passIf(ratio.median() >= 0.5)})

	var paced50, paced99 sample
	for rep := range b.sz.reps {
		_, acked, err := b.jobRound(ctx, fmt.Sprintf("p%d", rep), b.sz.pacedJobs, 50)
		if err != nil {
			return err
		}
		lat, err := b.submitLatencies(acked)
		if err != nil {
			return err
		}
		paced50 = append(paced50, float64(percentile(lat, 50).Microseconds())/1000)
		paced99 = append(paced99, float64(percentile(lat, 99).Microseconds())/1000)
		b.finishedJobs += b.sz.pacedJobs
	}
	b.add(row{section: section, name: fmt.Sprintf("create-to-submit p50 at 50 Jobs/s (%d Jobs)", b.sz.pacedJobs), value: paced50, unit: "ms"})
	b.add(row{section: section, name: fmt.Sprintf("create-to-submit p99 at 50 Jobs/s (%d Jobs)", b.sz.pacedJobs), value: paced99, unit: "ms",
		target: "<= 100 ms", pass: passIf(paced99.median() <= 100)})
	return nil
}
