package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/test/framework"
)

// The datacenter API load section (issue 16): at steady state, how many
// requests a second the datacenters receive per Job Stargate has in flight
// there, with the changes feed, and without it (single polls).

const (
	// dcapiPerDatacenter is how many of the section's Jobs each of its mock
	// datacenters runs: the Job controller lists a datacenter's occupied
	// slots in etcd before each submit, so the ramp costs grow with it.
	dcapiPerDatacenter = 1000
	dcapiLabel         = "bench-dcapi"
	// dcapiOperation is how long the section's operations run: far longer
	// than the section, so every Job stays in flight until the clock jumps.
	dcapiOperation = 24 * time.Hour
)

// offsetClock is the wall clock moved on by offset: the section's mock
// datacenters run on it, and jumping it ends all their jobs at once.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *offsetClock) jump(d time.Duration)            { c.offset.Add(int64(d)) }

// sectionDC is a mock datacenter of this section, served from this process
// (operations a day long, no job limit, no state file), with its Datacenter
// in Stargate.
type sectionDC struct {
	name, url, token string
	mock             *mockdc.Server
	clock            *offsetClock
	srv              *http.Server
	jobs             int // of the section's Jobs, how many run here
}

// startSectionDC starts mock datacenter name and registers it as Datacenter
// name, with its token where Stargate reads datacenter credentials.
func (b *bench) startSectionDC(ctx context.Context, name string) (*sectionDC, error) {
	d, err := b.serveMockDC(mockdc.Options{Name: name, RepaveDuration: dcapiOperation,
		RebootDuration: dcapiOperation, PowerDuration: dcapiOperation, MaxRunning: 1 << 20})
	if err != nil {
		return nil, err
	}
	if err := b.ensureNamespace(ctx, name); err != nil {
		return d, err
	}
	_, err = b.sg.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.DatacenterSpec{Endpoint: d.url, MaxConcurrentJobs: ptr.To[int32](100000)},
	}, metav1.CreateOptions{})
	return d, err
}

// serveMockDC serves mock datacenter opts.Name from this process on
// 127.0.0.1, on an offsetClock, with a token of its own written where
// Stargate reads datacenter credentials (opts.Clock and opts.TokenFile are
// set here). Stop it with stop.
func (b *bench) serveMockDC(opts mockdc.Options) (*sectionDC, error) {
	d := &sectionDC{name: opts.Name, token: "token-of-" + opts.Name, clock: &offsetClock{}}
	opts.TokenFile, opts.Clock = filepath.Join(b.c.CredsDir, opts.Name), d.clock
	if err := os.WriteFile(opts.TokenFile, []byte(d.token), 0o600); err != nil {
		return nil, err
	}
	var err error
	if d.mock, err = mockdc.New(opts); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d.url = "http://" + ln.Addr().String()
	d.srv = &http.Server{Handler: d.mock.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.srv.Serve(ln) }()
	return d, nil
}

// requests is how many datacenter API requests (every /v1/ route and
// /healthz) the mock served so far, by route.
func (d *sectionDC) requests(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s /metrics: %s %s", d.name, resp.Status, body)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "mockdc_requests_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `route="`)
		route, _, _ := strings.Cut(rest, `"`)
		if !strings.HasPrefix(route, "/v1/") && route != "/healthz" {
			continue // the bench's own reads
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return nil, err
		}
		out[route] += v
	}
	return out, s.Err()
}

func (d *sectionDC) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.srv.Shutdown(ctx)
}

// phaseTracker follows the phase of every Job of the section (by watch).
type phaseTracker struct {
	mu    sync.Mutex
	phase map[string]v1alpha1.JobPhase
}

func (p *phaseTracker) count(phase v1alpha1.JobPhase) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ph := range p.phase {
		if ph == phase {
			n++
		}
	}
	return n
}

// trackPhases follows the Jobs labelled selector until ctx is done: a list,
// then a watch from it, listed again whenever the watch ends.
func (b *bench) trackPhases(ctx context.Context, selector string) *phaseTracker {
	p := &phaseTracker{phase: map[string]v1alpha1.JobPhase{}}
	jobs := b.sg.StargateV1alpha1().Jobs("")
	go func() {
		for ctx.Err() == nil {
			list, err := jobs.List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			p.mu.Lock()
			for _, j := range list.Items {
				p.phase[j.Namespace+"/"+j.Name] = j.Status.Phase
			}
			p.mu.Unlock()
			w, err := jobs.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			for ev := range w.ResultChan() {
				if j, ok := ev.Object.(*v1alpha1.Job); ok && ev.Type != watch.Deleted && ev.Type != watch.Error {
					p.mu.Lock()
					p.phase[j.Namespace+"/"+j.Name] = j.Status.Phase
					p.mu.Unlock()
				}
			}
			w.Stop()
		}
	}()
	return p
}

// waitPhase waits until n Jobs are in phase, or fails after within.
func (p *phaseTracker) waitPhase(ctx context.Context, phase v1alpha1.JobPhase, n int, within time.Duration) (time.Duration, error) {
	start := time.Now()
	for p.count(phase) < n {
		if time.Since(start) > within {
			return 0, fmt.Errorf("%d of %d Jobs %s after %s", p.count(phase), n, phase, within)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return time.Since(start), nil
}

// window counts the requests dcs received over d, by route.
func window(ctx context.Context, dcs []*sectionDC, d time.Duration) (map[string]float64, error) {
	before := make([]map[string]float64, len(dcs))
	for i, dc := range dcs {
		var err error
		if before[i], err = dc.requests(ctx); err != nil {
			return nil, err
		}
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d):
	}
	total := map[string]float64{}
	for i, dc := range dcs {
		after, err := dc.requests(ctx)
		if err != nil {
			return nil, err
		}
		for route, v := range after {
			total[route] += v - before[i][route]
		}
	}
	return total, nil
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

// byRoute spells a window's requests per second by route, busiest first.
func byRoute(m map[string]float64, secs float64) string {
	type rr struct {
		route string
		n     float64
	}
	var rs []rr
	for route, n := range m {
		if n > 0 {
			rs = append(rs, rr{route, n})
		}
	}
	slices.SortFunc(rs, func(a, b rr) int { return cmp.Compare(b.n, a.n) })
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s %s/s", r.route, num(r.n/secs)))
	}
	return strings.Join(parts, ", ")
}

// datacenterRequests measures what following Jobs costs the datacenters.
// The section runs its own mock datacenters in this process (operations a
// day long, so nothing finishes on its own), b.sz.inFlightJobs reboot Jobs
// spread over them (dcapiPerDatacenter each), each on a Hardware of its own.
// Once every Job is Running, and after a settling pause, it counts every
// request the datacenters receive over a window (feeds, single reads,
// capabilities, health probes, submits, lookups) and divides by the Jobs in
// flight: first with the changes feed offered everywhere, then with the feed
// withdrawn at run time from the first datacenter, whose Jobs fall back to
// single polls. Then the mocks' clocks jump past the operations' end, every
// Job succeeds, and the Datacenters are deleted; the Hardware and the
// finished Jobs stay (in namespaces dcapi-NN).
func (b *bench) datacenterRequests(ctx context.Context) error {
	n := b.sz.inFlightJobs
	k := max(2, (n+dcapiPerDatacenter-1)/dcapiPerDatacenter)
	windowFor, settle := 30*time.Second, 10*time.Second
	if n < 1000 {
		windowFor = 20 * time.Second
	}
	var dcs []*sectionDC
	defer func() {
		for _, dc := range dcs {
			dc.stop()
		}
	}()
	for i := range k {
		dc, err := b.startSectionDC(ctx, fmt.Sprintf("dcapi-%02d", i))
		if dc != nil {
			dcs = append(dcs, dc)
		}
		if err != nil {
			return err
		}
		dc.jobs = n / k
		if i < n%k {
			dc.jobs++
		}
	}
	section := fmt.Sprintf("8. Datacenter API load: %d reboot Jobs held in flight across %d mock datacenters", n, k)
	start := time.Now()
	for _, dc := range dcs {
		if _, err := b.createMany(ctx, b.paths[0], dc.name, dc.jobs, 32, 512); err != nil {
			return err
		}
	}
	fmt.Printf("   %d Hardware created (%s)\n", n, time.Since(start).Round(time.Second))

	trackCtx, stopTracking := context.WithCancel(ctx)
	defer stopTracking()
	phases := b.trackPhases(trackCtx, dcapiLabel+"=1")
	start = time.Now()
	err := framework.FanOut(ctx, n, 32, func(i int) error {
		dc := dcs[i%k]
		job := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("dcapi-%06d", i/k), Labels: map[string]string{dcapiLabel: "1"}},
			Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: fmt.Sprintf("hw-%06d", i/k)}, Operation: v1alpha1.OperationReboot}}
		_, err := b.sg.StargateV1alpha1().Jobs(dc.name).Create(ctx, job, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	if _, err := phases.waitPhase(ctx, v1alpha1.JobRunning, n, 8*time.Minute); err != nil {
		return err
	}
	b.add(row{section: section, name: "creating the Jobs until all are Running (the ramp, not a target)", value: sample{time.Since(start).Seconds()}, unit: "s"})
	time.Sleep(settle)

	// The feed offered everywhere.
	on, err := window(ctx, dcs, windowFor)
	if err != nil {
		return err
	}
	if got := phases.count(v1alpha1.JobRunning); got != n {
		return fmt.Errorf("%d of %d Jobs Running after the window with the feed", got, n)
	}
	secs := windowFor.Seconds()
	perJobOn := sum(on) / secs / float64(n)
	b.add(row{section: section, name: fmt.Sprintf("datacenter requests/s per in-flight Job, changes feed offered (every route, all %d datacenters, %s window)",
		k, windowFor), value: sample{perJobOn}, unit: "/s", target: "<= 0.02", pass: passIf(perJobOn <= 0.02)})
	b.add(row{section: section, name: "  of which: " + byRoute(on, secs), value: sample{sum(on) / secs}, unit: "/s"})

	// The feed withdrawn from the first datacenter at run time.
	off := dcs[0]
	off.mock.SetBatchOffered(false)
	time.Sleep(settle)
	single, err := window(ctx, dcs[:1], windowFor)
	if err != nil {
		return err
	}
	if got := phases.count(v1alpha1.JobRunning); got != n {
		return fmt.Errorf("%d of %d Jobs Running after the window without the feed", got, n)
	}
	perJobOff := sum(single) / secs / float64(off.jobs)
	b.add(row{section: section, name: fmt.Sprintf("datacenter requests/s per in-flight Job, changes feed withdrawn at run time (%s, %d Jobs: single polls)",
		off.name, off.jobs), value: sample{perJobOff}, unit: "/s", ratio: perJobOff / perJobOn, versus: "feed offered"})
	b.add(row{section: section, name: "  of which: " + byRoute(single, secs), value: sample{sum(single) / secs}, unit: "/s"})

	// Every job ends; the Datacenters go.
	start = time.Now()
	for _, dc := range dcs {
		dc.clock.jump(2 * dcapiOperation)
	}
	if _, err := phases.waitPhase(ctx, v1alpha1.JobSucceeded, n, 8*time.Minute); err != nil {
		return fmt.Errorf("ending the section's Jobs: %w", err)
	}
	fmt.Printf("   %d Jobs succeeded once their operations ended (%s)\n", n, time.Since(start).Round(time.Second))
	var errs []error
	for _, dc := range dcs {
		errs = append(errs, b.sg.StargateV1alpha1().Datacenters().Delete(ctx, dc.name, metav1.DeleteOptions{}))
	}
	return errors.Join(errs...)
}
