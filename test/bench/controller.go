package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
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
// Succeeded. It returns the wall time and the time each Job's create request
// was sent.
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
			sent := time.Now()
			got, err := b.sg.StargateV1alpha1().Jobs(dc).Create(ctx, job, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			mu.Lock()
			acked[got.UID] = sent
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

// submitLatencies pairs the time each Job's create request was sent with the
// time its datacenter started it (the mock's ledger, same machine clock): the
// signed difference, not clamped.
func (b *bench) submitLatencies(sent map[types.UID]time.Time) ([]time.Duration, error) {
	var out []time.Duration
	for _, dc := range datacenters {
		ledger, err := b.c.Ledger(dc)
		if err != nil {
			return nil, err
		}
		seen := map[string]int{}
		for _, e := range ledger {
			seen[e.IdempotencyKey]++
			if t, ok := sent[types.UID(e.IdempotencyKey)]; ok {
				out = append(out, e.StartedAt.Sub(t))
			}
		}
		for key, n := range seen {
			if n > 1 {
				return nil, fmt.Errorf("%s ran job %s %d times", dc, key, n)
			}
		}
	}
	if len(out) != len(sent) {
		return nil, fmt.Errorf("%d of %d Jobs are in the ledgers", len(out), len(sent))
	}
	return out, nil
}

// counts is what the controller section counts, read at one moment.
type counts struct {
	at time.Time
	// Write requests served (apiserver_request_total, write verbs):
	// Stargate's by resource, and kube-apiserver's for Events, which
	// Stargate's controllers record there.
	jobs, hardwares, otherStargate, events float64
	// etcd's own count of the keys put and deleted, of its transactions that
	// applied more than one operation (a Kubernetes compare-and-put applies
	// one: its compare is read apart), and its revision (one per write that
	// changed something).
	puts, deletes, txns, revision float64
	// byPrefix is, for a minus'ed counts, the keys put or deleted in the
	// interval by key prefix (etcdWritesByPrefix), when read.
	byPrefix map[string]float64
}

func (c counts) apiWrites() float64 { return c.jobs + c.hardwares + c.otherStargate }

// minus is the counts from before to c, at = the interval's length after
// the zero time.
func (c counts) minus(before counts) counts {
	out := counts{at: time.Time{}.Add(c.at.Sub(before.at)),
		jobs: c.jobs - before.jobs, hardwares: c.hardwares - before.hardwares,
		otherStargate: c.otherStargate - before.otherStargate, events: c.events - before.events,
		puts: c.puts - before.puts, deletes: c.deletes - before.deletes, txns: c.txns - before.txns,
		revision: c.revision - before.revision, byPrefix: map[string]float64{}}
	for k, v := range c.byPrefix {
		out.byPrefix[k] = v - before.byPrefix[k]
	}
	for k, v := range before.byPrefix {
		if _, ok := c.byPrefix[k]; !ok {
			out.byPrefix[k] = -v
		}
	}
	return out
}

// interval is the length of a minus'ed counts' interval.
func (c counts) interval() time.Duration { return c.at.Sub(time.Time{}) }

// scaled is c times f (the counts of an idle interval, to subtract).
func (c counts) scaled(f float64) counts {
	out := counts{at: c.at, jobs: c.jobs * f, hardwares: c.hardwares * f, otherStargate: c.otherStargate * f, events: c.events * f,
		puts: c.puts * f, deletes: c.deletes * f, txns: c.txns * f, revision: c.revision * f, byPrefix: map[string]float64{}}
	for k, v := range c.byPrefix {
		out.byPrefix[k] = v * f
	}
	return out
}

// etcdWritesByPrefix replays etcd's history from revision from (exclusive)
// to to (inclusive) and counts the keys put or deleted by prefix: the
// resource for /registry keys ("/registry/events", "/registry/stargate.io/jobs"),
// else the first path element.
func (b *bench) etcdWritesByPrefix(ctx context.Context, from, to int64) (map[string]float64, error) {
	out := map[string]float64{}
	if to <= from {
		return out, nil
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for resp := range b.etcd.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(from+1)) {
		if err := resp.Err(); err != nil {
			return nil, err
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision > to {
				return out, nil
			}
			out[keyPrefix(string(ev.Kv.Key))]++
			if ev.Kv.ModRevision == to && ev == resp.Events[len(resp.Events)-1] {
				return out, nil
			}
		}
	}
	return nil, fmt.Errorf("etcd history from revision %d to %d: %w", from, to, wctx.Err())
}

// keyPrefix is "/registry", the API groups that follow it (segments with a
// dot: Stargate stores under /registry/stargate.io/stargate.io/) and the
// resource, "/registry/stargate.io/stargate.io/jobs"; for other keys, the
// first segment.
func keyPrefix(key string) string {
	parts := strings.Split(strings.TrimPrefix(key, "/"), "/")
	if parts[0] != "registry" {
		return "/" + parts[0]
	}
	i := 1
	for i < len(parts)-1 && strings.Contains(parts[i], ".") {
		i++
	}
	return "/" + strings.Join(parts[:min(i+1, len(parts))], "/")
}

// writeVerbs are apiserver_request_total's verbs of write requests.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true}

// countsNow scrapes Stargate's, kube-apiserver's and etcd's /metrics.
func (b *bench) countsNow(ctx context.Context) (counts, error) {
	var c counts
	raw, err := b.sg.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return c, fmt.Errorf("stargate-apiserver /metrics: %w", err)
	}
	for _, m := range parseMetrics(raw) {
		if m.name != "apiserver_request_total" || !writeVerbs[m.label("verb")] {
			continue
		}
		switch m.label("resource") {
		case "jobs":
			c.jobs += m.value
		case "hardwares":
			c.hardwares += m.value
		default:
			c.otherStargate += m.value
		}
	}
	if raw, err = b.kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx); err != nil {
		return c, fmt.Errorf("kube-apiserver /metrics: %w", err)
	}
	for _, m := range parseMetrics(raw) {
		if m.name == "apiserver_request_total" && writeVerbs[m.label("verb")] && m.label("resource") == "events" {
			c.events += m.value
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.c.EtcdURL+"/metrics", nil)
	if err != nil {
		return c, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, fmt.Errorf("etcd /metrics: %w", err)
	}
	defer resp.Body.Close()
	if raw, err = io.ReadAll(resp.Body); err != nil {
		return c, fmt.Errorf("etcd /metrics: %w", err)
	}
	found := 0
	for _, m := range parseMetrics(raw) {
		switch m.name {
		case "etcd_mvcc_put_total":
			c.puts, found = m.value, found+1
		case "etcd_mvcc_delete_total":
			c.deletes, found = m.value, found+1
		case "etcd_mvcc_txn_total":
			c.txns, found = m.value, found+1
		case "etcd_debugging_mvcc_current_revision":
			c.revision, found = m.value, found+1
		}
	}
	if found != 4 {
		return c, fmt.Errorf("etcd /metrics: %d of etcd_mvcc_put_total, etcd_mvcc_delete_total, etcd_mvcc_txn_total, etcd_debugging_mvcc_current_revision found", found)
	}
	c.at = time.Now()
	return c, nil
}

// settle waits (up to limit) until a second passes without Stargate serving
// a write (and, with events, without kube-apiserver serving an Event write):
// the controllers' work has ended.
func (b *bench) settle(ctx context.Context, events bool, limit time.Duration) error {
	last, err := b.countsNow(ctx)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		now, err := b.countsNow(ctx)
		if err != nil {
			return err
		}
		if now.apiWrites() == last.apiWrites() && (!events || now.events == last.events) {
			return nil
		}
		last = now
	}
	return nil
}

// prefixes prints counts by key prefix divided by per, largest first.
func prefixes(m map[string]float64, per float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s %s", k, num(m[k]/per)))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// metric is one sample of a Prometheus text exposition.
type metric struct {
	name, labels string // labels as written: `verb="POST",resource="jobs"`
	value        float64
}

// label is the value of one label.
func (m metric) label(key string) string {
	i := strings.Index(","+m.labels, ","+key+`="`)
	if i < 0 {
		return ""
	}
	v := m.labels[i+len(key)+2:]
	return v[:strings.IndexByte(v, '"')]
}

func parseMetrics(raw []byte) []metric {
	var out []metric
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		m := metric{name: line}
		rest := ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			m.name, m.labels, rest = line[:i], line[i+1:j], line[j+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			m.name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m.value = v
		out = append(out, m)
	}
	return out
}

// idleSeconds is how long etcd's idle write rate is measured for.
const idleSeconds = 15

// controller runs controllerJobs zero-time reboots across two mock
// datacenters, reps times, counting the writes each Job costs in API
// requests and in etcd (less etcd's idle rate, measured before), then a
// round paced at 50 Jobs/s.
func (b *bench) controller(ctx context.Context) error {
	if err := b.controllerSetup(ctx); err != nil {
		return err
	}
	// etcd is shared with kube-apiserver (its leases, Events): measure its
	// writes over an idle interval, once nothing is left to do, and subtract
	// that rate over each round's interval.
	if err := b.settle(ctx, true, time.Minute); err != nil {
		return err
	}
	idleFrom, err := b.countsNow(ctx)
	if err != nil {
		return err
	}
	select {
	case <-time.After(idleSeconds * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	idleTo, err := b.countsNow(ctx)
	if err != nil {
		return err
	}
	idle := idleTo.minus(idleFrom)
	if idle.byPrefix, err = b.etcdWritesByPrefix(ctx, int64(idleFrom.revision), int64(idleTo.revision)); err != nil {
		return err
	}
	perSecond := idle.scaled(1 / idle.interval().Seconds())
	fmt.Printf("   etcd key writes while idle for %.0f s: %s\n", idle.interval().Seconds(), prefixes(idle.byPrefix, 1))

	n := b.sz.controllerJobs
	var rate sample
	var rounds []counts
	var lat []time.Duration // every repetition's
	var p50, p99 sample     // each repetition's
	for rep := range b.sz.reps {
		if err := b.settle(ctx, false, 15*time.Second); err != nil {
			return err
		}
		before, err := b.countsNow(ctx)
		if err != nil {
			return err
		}
		took, sent, err := b.jobRound(ctx, fmt.Sprintf("r%d", rep), n, 0)
		if err != nil {
			return err
		}
		// The Jobs' last writes (Hardware ready, say) may follow Succeeded.
		if err := b.settle(ctx, false, 15*time.Second); err != nil {
			return err
		}
		after, err := b.countsNow(ctx)
		if err != nil {
			return err
		}
		l, err := b.submitLatencies(sent)
		if err != nil {
			return err
		}
		lat = append(lat, l...)
		p50, p99 = append(p50, ms(percentile(l, 50))), append(p99, ms(percentile(l, 99)))
		rate = append(rate, float64(n)/took.Seconds())
		round := after.minus(before)
		if round.byPrefix, err = b.etcdWritesByPrefix(ctx, int64(before.revision), int64(after.revision)); err != nil {
			return err
		}
		rounds = append(rounds, round)
		b.finishedJobs += n
	}

	var api, jobsW, hwW, otherW, eventRate, puts, deletes, txns, revisions, keyWrites, ratio sample
	byPrefix := map[string]sample{}
	top := b.sz.concurrencies[len(b.sz.concurrencies)-1]
	ceiling := b.ceiling[top].median()
	per := func(v float64) float64 { return v / float64(n) }
	for _, r := range rounds {
		for k := range r.byPrefix {
			byPrefix[k] = nil
		}
	}
	for i, r := range rounds {
		net := r.minus(perSecond.scaled(r.interval().Seconds()))
		fmt.Printf("   etcd key writes per Job in round %d (%.0f s), idle rate subtracted: %s\n", i, r.interval().Seconds(), prefixes(net.byPrefix, float64(n)))
		for k := range byPrefix {
			byPrefix[k] = append(byPrefix[k], per(net.byPrefix[k]))
		}
		api, jobsW, hwW, otherW = append(api, per(r.apiWrites())), append(jobsW, per(r.jobs)), append(hwW, per(r.hardwares)), append(otherW, per(r.otherStargate))
		eventRate = append(eventRate, r.events/r.interval().Seconds())
		puts, deletes, txns, revisions = append(puts, per(net.puts)), append(deletes, per(net.deletes)), append(txns, per(net.txns)), append(revisions, per(net.revision))
		keyWrites = append(keyWrites, per(net.puts+net.deletes))
		ratio = append(ratio, rate[i]*per(net.puts+net.deletes)/ceiling)
	}
	section := fmt.Sprintf("5. Controller: %d reboot Jobs across 2 mock datacenters, zero operation time", n)
	b.add(row{section: section, name: "Jobs completed per second (create of the first to Succeeded of the last)", value: rate, unit: "/s"})
	b.add(row{section: section, name: "API writes per Job (Stargate's apiserver_request_total, all write verbs)", value: api, unit: ""})
	b.add(row{section: section, name: "… of which to Jobs (incl. status)", value: jobsW, unit: ""})
	b.add(row{section: section, name: "… of which to Hardware (incl. status)", value: hwW, unit: ""})
	b.add(row{section: section, name: "… of which to other Stargate resources", value: otherW, unit: ""})
	b.add(row{section: section, name: "Event writes/s meanwhile (kube-apiserver's apiserver_request_total; paced by Stargate's Event client, so a rate, not per Job)", value: eventRate, unit: "/s"})
	b.add(row{section: section, name: "etcd key writes per Job, all keys (etcd_mvcc_put_total + delete_total, idle rate subtracted)", value: keyWrites, unit: ""})
	b.add(row{section: section, name: "… etcd puts per Job (etcd_mvcc_put_total, idle rate subtracted)", value: puts, unit: ""})
	b.add(row{section: section, name: "… etcd deletes per Job (etcd_mvcc_delete_total, idle rate subtracted)", value: deletes, unit: ""})
	keys := make([]string, 0, len(byPrefix))
	for k, v := range byPrefix {
		if math.Abs(v.median()) >= 0.005 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return byPrefix[keys[i]].median() > byPrefix[keys[j]].median() })
	for _, k := range keys {
		b.add(row{section: section, name: fmt.Sprintf("… etcd key writes per Job under %s (etcd's history, idle rate subtracted)", k), value: byPrefix[k], unit: ""})
	}
	b.add(row{section: section, name: "etcd revisions per Job (writes that changed a key, idle rate subtracted)", value: revisions, unit: ""})
	b.add(row{section: section, name: "etcd transactions of more than one applied op per Job (etcd_mvcc_txn_total; a compare-and-put is one op; idle rate subtracted)", value: txns, unit: ""})
	b.add(row{section: section, name: fmt.Sprintf("etcd idle rate subtracted above: key writes/s over %.0f s idle before the rounds (%s)", idle.interval().Seconds(), prefixes(idle.byPrefix, 1)),
		value: sample{perSecond.puts + perSecond.deletes}, unit: "/s"})
	all50, all99 := ms(percentile(lat, 50)), ms(percentile(lat, 99))
	b.add(row{section: section, name: "create-sent-to-datacenter-submit p50 (at full speed)", value: p50, pooled: &all50, unit: "ms"})
	b.add(row{section: section, name: "create-sent-to-datacenter-submit p99 (at full speed)", value: p99, pooled: &all99, unit: "ms"})
	if ceiling > 0 { // the etcd section ran (not so with -sections controller)
		b.add(row{section: section, name: fmt.Sprintf("jobs/s x etcd key writes per Job (all keys) / etcd ceiling at concurrency %d", top), value: ratio, unit: "",
			target: ">= 0.5", pass: passIf(ratio.median() >= 0.5)})
	}

	var paced []time.Duration
	var paced50, paced99 sample
	for rep := range b.sz.reps {
		_, sent, err := b.jobRound(ctx, fmt.Sprintf("p%d", rep), b.sz.pacedJobs, 50)
		if err != nil {
			return err
		}
		l, err := b.submitLatencies(sent)
		if err != nil {
			return err
		}
		paced = append(paced, l...)
		paced50, paced99 = append(paced50, ms(percentile(l, 50))), append(paced99, ms(percentile(l, 99)))
		b.finishedJobs += b.sz.pacedJobs
	}
	pacedAll50, pacedAll99 := ms(percentile(paced, 50)), ms(percentile(paced, 99))
	b.add(row{section: section, name: fmt.Sprintf("create-sent-to-submit p50 at 50 Jobs/s (%d Jobs per rep)", b.sz.pacedJobs), value: paced50, pooled: &pacedAll50, unit: "ms"})
	b.add(row{section: section, name: fmt.Sprintf("create-sent-to-submit p99 at 50 Jobs/s (%d Jobs per rep)", b.sz.pacedJobs), value: paced99, pooled: &pacedAll99, unit: "ms",
		target: "<= 100 ms", pass: passIf(pacedAll99 <= 100)})
	return nil
}
